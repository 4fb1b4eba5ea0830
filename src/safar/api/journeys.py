"""``/v1/journeys``: journey definitions and their lifecycle, entries by API, and each customer's
journeys (``/v1/profiles/{ref}/journeys``).

A journey is sent as its YAML file, parsed and validated as ``safar validate`` does (templates
from the configured directory when it exists, CEL conditions), then stored as a draft or
published through :mod:`safar.runtime.catalog`. Definition problems come back as a 400 whose
``problems`` name the line and field of each.

An entry request is not carried out here: it is appended to the event log as a
:data:`~safar.runtime.journeys.ENTRY_REQUEST_EVENT` track event whose messageId comes from the
request id, so it is ordered with the customer's own events and a retried request is
deduplicated by the log; the journey runtime enters the customer when it reaches it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from safar.api.auth import ApiKeyAuth
from safar.api.profiles import parse_limit
from safar.api.requests import (
    YAML_TYPES,
    decode_body,
    find_profile,
    iso_or_none,
    media_type,
    problems_response,
    profile_ids,
    query_flag,
    read_body,
    resolve_ref,
    text_body,
)
from safar.core.identity import IdentityRules
from safar.definitions import DefinitionError, Problem, validate_journey
from safar.definitions.journeys import load_journey
from safar.definitions.validate import ConditionChecker, cel_checker
from safar.errors import Conflict, NotFound, ValidationError
from safar.model.events import iso
from safar.model.journeys import Journey, JourneyVersion, Migration
from safar.model.runs import Instance, Visit
from safar.ports import Clock, EventLog, JourneyStore, ProfileReader, RunStore
from safar.runtime import catalog
from safar.runtime.internal import track_event
from safar.runtime.journeys import ENTRY_REQUEST_EVENT

_MAX_REQUEST_ID: Final = 200


class _CreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    yaml: str
    publish: bool = False
    migration: Migration | None = None


class _PublishRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    migration: Migration | None = None


class _EntryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    profile: str
    request_id: str | None = None
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class JourneyEndpoints:
    """The journey endpoints. Store work runs in threads: the stores block."""

    def __init__(
        self,
        *,
        journeys: JourneyStore,
        events: EventLog,
        profiles: ProfileReader,
        rules: IdentityRules,
        clock: Clock,
        templates_dir: Path | None = None,
    ) -> None:
        self._journeys = journeys
        self._events = events
        self._profiles = profiles
        self._rules = rules
        self._clock = clock
        self._templates_dir = templates_dir
        self._conditions: ConditionChecker = cel_checker()
        # Lifecycle changes read the versions, then write one: two at once could both take the
        # same version number. One lock serializes them within this process.
        self._lock = threading.Lock()

    def list_journeys(self, request: Request) -> JSONResponse:
        """``GET /v1/journeys``: each journey's newest version, by id."""
        by_id: dict[str, list[JourneyVersion]] = {}
        for version in self._journeys.all():
            by_id.setdefault(version.journey_id, []).append(version)
        return JSONResponse({"data": [summary_document(v) for _, v in sorted(by_id.items())]})

    def get_journey(self, request: Request) -> JSONResponse:
        """``GET /v1/journeys/{id}``: every version, oldest first."""
        journey_id = request.path_params["id"]
        versions = self._journeys.versions(journey_id)
        if not versions:
            raise NotFound(f"no journey {journey_id!r}")
        return JSONResponse({"id": journey_id, "versions": [version_document(v) for v in versions]})

    async def create(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys``: save a journey file as a draft, or publish it."""
        body = await read_body(request)
        media = media_type(request)
        if media in YAML_TYPES:
            wanted = _CreateRequest(
                yaml=text_body(body, "journey"), publish=query_flag(request, "publish")
            )
        elif media == "application/json":
            wanted = decode_body(body, _CreateRequest)
        else:
            raise ValidationError(
                f"send the journey file as application/yaml, or JSON with a 'yaml' field;"
                f" got {media or 'no Content-Type'}",
                "Content-Type",
            )
        if wanted.migration is not None and not wanted.publish:
            raise ValidationError("applies only when publishing: add publish: true", "migration")
        return await run_in_threadpool(self._create, wanted)

    def _create(self, wanted: _CreateRequest) -> JSONResponse:
        try:
            journey, lines = load_journey(wanted.yaml)
        except DefinitionError as exc:
            return problems_response(exc.problems, "journey")
        problems = self._check(journey, lines)
        if problems:
            return problems_response(problems, "journey")
        now = self._clock.now_ms()
        with self._lock:
            if wanted.publish:
                version, changed = catalog.publish(self._journeys, journey, now, wanted.migration)
            else:
                self._refuse_stopped(journey.id)
                version, changed = catalog.save_draft(self._journeys, journey, now), True
        return JSONResponse(
            {**version_document(version), "changed": changed},
            status_code=201 if changed else 200,
            headers={"Location": f"/v1/journeys/{journey.id}"},
        )

    async def publish(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys/{id}/publish``: publish the current draft."""
        body = await read_body(request)
        wanted = decode_body(body, _PublishRequest) if body.strip() else _PublishRequest()
        return await run_in_threadpool(self._publish, request.path_params["id"], wanted)

    def _publish(self, journey_id: str, wanted: _PublishRequest) -> JSONResponse:
        with self._lock:
            latest = self._journeys.get(journey_id)
            if latest is None:
                raise NotFound(f"no journey {journey_id!r}")
            if latest.status != "draft":
                raise Conflict(
                    f"journey {journey_id!r} has no draft to publish (version {latest.version} is"
                    f" {latest.status}); POST the journey file to /v1/journeys to make one"
                )
            # Templates may have changed since the draft was saved: check again.
            problems = self._check(latest.definition, {})
            if problems:
                return problems_response(problems, "journey")
            version, changed = catalog.publish(
                self._journeys, latest.definition, self._clock.now_ms(), wanted.migration
            )
        return JSONResponse({**version_document(version), "changed": changed})

    def pause(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys/{id}/pause``: stop entries; customers inside go on."""
        return self._set_status(request, "pause")

    def resume(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys/{id}/resume``: take entries again."""
        return self._set_status(request, "resume")

    def stop(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys/{id}/stop``: end the journey for good."""
        return self._set_status(request, "stop")

    def _set_status(self, request: Request, action: str) -> JSONResponse:
        with self._lock:
            version = catalog.set_status(
                self._journeys, request.path_params["id"], action, self._clock.now_ms()
            )
        return JSONResponse(version_document(version))

    async def enter(self, request: Request) -> JSONResponse:
        """``POST /v1/journeys/{id}/entries``: ask for a customer to enter (202)."""
        wanted = decode_body(await read_body(request), _EntryRequest)
        request_id = wanted.request_id
        if request_id is not None and (
            not 0 < len(request_id.strip()) <= _MAX_REQUEST_ID or "\x00" in request_id
        ):
            # It becomes the entry event's messageId, which holds no NUL either.
            raise ValidationError(
                f"must be 1 to {_MAX_REQUEST_ID} characters, without NUL", "request_id"
            )
        return await run_in_threadpool(self._enter, request.path_params["id"], wanted)

    def _enter(self, journey_id: str, wanted: _EntryRequest) -> JSONResponse:
        self._require_api_entry(journey_id)
        identifier, profile = resolve_ref(self._profiles, self._rules, wanted.profile, "profile")
        # Randomness is fine here: an id the client did not give cannot be retried anyway.
        request_id = wanted.request_id or uuid.uuid4().hex
        now = self._clock.now_ms()
        event = track_event(
            key=f"entry:{journey_id}:{request_id}",
            identifier=identifier,
            name=ENTRY_REQUEST_EVENT,
            properties={"journey_id": journey_id, "context": wanted.context},
            at=now,
        )
        self._events.append([event])
        body = {"request_id": request_id, "accepted": True, "profile_id": profile.id}
        return JSONResponse(body, status_code=202)

    def _require_api_entry(self, journey_id: str) -> None:
        """NotFound unless the journey's newest non-draft version is published with entry.api."""
        versions = self._journeys.versions(journey_id)
        if not versions:
            raise NotFound(f"no journey {journey_id!r}")
        live = [v for v in versions if v.status != "draft"]
        if not live or live[-1].status != "published":
            state = live[-1].status if live else "only a draft"
            raise NotFound(
                f"journey {journey_id!r} is not published ({state}); customers can enter only"
                " a published journey"
            )
        if not live[-1].definition.entry.api:
            raise NotFound(
                f"journey {journey_id!r} does not take entries by API: set entry.api: true in"
                " its file and publish it"
            )

    def _refuse_stopped(self, journey_id: str) -> None:
        if any(v.status == "stopped" for v in self._journeys.versions(journey_id)):
            raise Conflict(f"journey {journey_id!r} was stopped; give it a new id to run it again")

    def _check(self, journey: Journey, lines: Mapping[str, int]) -> list[Problem]:
        return validate_journey(
            journey, templates=self._templates(), conditions=self._conditions, lines=lines
        )

    def _templates(self) -> dict[str, str | None] | None:
        """Template id -> channel, read afresh (templates are files that change), or None
        when there is no templates directory to check against."""
        directory = self._templates_dir
        if directory is None or not directory.is_dir():
            return None
        from safar.templates import TemplateCatalog, TemplateError  # Liquid loads on first use

        loaded = TemplateCatalog.load(directory)
        channels: dict[str, str | None] = {}
        for name in loaded.names():
            try:
                channels[name] = loaded.get(name).channel
            except TemplateError:  # a broken template still exists; sending it fails later
                channels[name] = None
        return channels


class RunEndpoints:
    """``/v1/profiles/{ref}/journeys``: the journeys a customer went through."""

    def __init__(self, *, runs: RunStore, profiles: ProfileReader, rules: IdentityRules) -> None:
        self._runs = runs
        self._profiles = profiles
        self._rules = rules

    def history(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/journeys?limit=``: newest entry first, with each path."""
        limit = parse_limit(request)
        profile = find_profile(self._profiles, self._rules, request.path_params["ref"])
        instances: list[Instance] = []
        visits: dict[str, list[Visit]] = {}
        # Instances entered before a merge stay filed under the profile id they entered with.
        for profile_id in profile_ids(profile):
            found, taken = self._runs.history(profile_id, limit)
            instances += found
            for visit in taken:
                visits.setdefault(visit.instance_id, []).append(visit)
        instances.sort(key=lambda instance: instance.entered_at, reverse=True)
        data = [instance_document(i, visits.get(i.id, [])) for i in instances[:limit]]
        return JSONResponse({"data": data})


def journey_routes(
    auth: ApiKeyAuth,
    *,
    journeys: JourneyStore,
    events: EventLog,
    profiles: ProfileReader,
    rules: IdentityRules,
    clock: Clock,
    templates_dir: Path | None = None,
) -> list[Route]:
    """The ``/v1/journeys`` routes: reading needs ``read``, every change ``write``.

    ``templates_dir`` holds the message templates ``send`` steps are checked against; when it
    is None or does not exist, template names are not checked.
    """
    api = JourneyEndpoints(
        journeys=journeys,
        events=events,
        profiles=profiles,
        rules=rules,
        clock=clock,
        templates_dir=templates_dir,
    )
    read, write = auth.require("read"), auth.require("write")
    return [
        Route("/v1/journeys", read(api.list_journeys), methods=["GET"]),
        Route("/v1/journeys", write(api.create), methods=["POST"]),
        Route("/v1/journeys/{id}", read(api.get_journey), methods=["GET"]),
        Route("/v1/journeys/{id}/publish", write(api.publish), methods=["POST"]),
        Route("/v1/journeys/{id}/pause", write(api.pause), methods=["POST"]),
        Route("/v1/journeys/{id}/resume", write(api.resume), methods=["POST"]),
        Route("/v1/journeys/{id}/stop", write(api.stop), methods=["POST"]),
        Route("/v1/journeys/{id}/entries", write(api.enter), methods=["POST"]),
    ]


def run_routes(
    auth: ApiKeyAuth, *, runs: RunStore, profiles: ProfileReader, rules: IdentityRules
) -> list[Route]:
    """``GET /v1/profiles/{ref}/journeys`` (``read``)."""
    api = RunEndpoints(runs=runs, profiles=profiles, rules=rules)
    read = auth.require("read")
    return [Route("/v1/profiles/{ref}/journeys", read(api.history), methods=["GET"])]


# -- Documents ----------------------------------------------------------------------------------


def version_document(version: JourneyVersion) -> dict[str, Any]:
    """One stored version with its definition, as the API renders it."""
    return {
        "journey_id": version.journey_id,
        "version": version.version,
        "status": version.status,
        "created_at": iso(version.created_at),
        "published_at": iso_or_none(version.published_at),
        "migration": msgspec.to_builtins(version.migration),
        "definition": msgspec.to_builtins(version.definition),
    }


def summary_document(versions: Sequence[JourneyVersion]) -> dict[str, Any]:
    """A journey in a list: its newest version, and which version customers enter."""
    newest = versions[-1]
    live = [v for v in versions if v.status in ("published", "paused")]
    definition = newest.definition
    return {
        "id": newest.journey_id,
        "name": definition.name,
        "version": newest.version,
        "status": newest.status,
        "stage": definition.stage,
        "published_at": iso_or_none(newest.published_at),
        "live_version": live[-1].version if live else None,
        "entry": msgspec.to_builtins(definition.entry),
    }


def instance_document(instance: Instance, visits: Sequence[Visit]) -> dict[str, Any]:
    """One customer's pass through one journey version, with the steps taken."""
    return {
        "id": instance.id,
        "journey_id": instance.journey_id,
        "version": instance.version,
        "status": instance.status,
        "step": instance.step,
        "entered_at": iso(instance.entered_at),
        "ended_at": iso_or_none(instance.ended_at),
        "exit_reason": instance.exit_reason,
        "waiting_for": instance.waiting_for,
        "wake_at": iso_or_none(instance.wake_at),
        "visits": [{"step": v.step, "at": iso(v.at), "outcome": v.outcome} for v in visits],
    }
