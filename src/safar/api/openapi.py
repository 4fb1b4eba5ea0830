"""The OpenAPI 3.1 document for Safar's HTTP API, served as ``/openapi.json`` and as ``/docs``.

The document is written by hand as data: it is the contract users code against, so it changes
only on purpose. A test checks that every served route is in it. ``/docs`` is rendered on the
server from the same document, with no scripts or remote assets (Safar often runs offline).
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from safar import __version__
from safar.model.messages import CHANNELS

JSON: Final = "application/json"
_INGEST_EVENT_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any], media: str = JSON) -> dict[str, Any]:
    return {"200": {"description": description, "content": {media: {"schema": schema}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/{status}"} for status in statuses}


def _public(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["server"],
        "summary": summary,
        "security": [],
        "responses": responses,
    }


def _profile_read(
    operation_id: str, summary: str, description: str, **extra: Any
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["profiles"],
        "summary": summary,
        "description": description,
        "security": [{"apiKey": []}],
        **extra,
    }


def _managed(
    operation_id: str, tag: str, scope: str, summary: str, description: str, **extra: Any
) -> dict[str, Any]:
    """A management operation needing an API key with ``scope``."""
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": f"{description} Needs the `{scope}` scope.",
        "security": [{"apiKey": []}],
        **extra,
    }


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _link(operation_id: str, summary: str, description: str, responses: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["links"],
        "summary": summary,
        "description": description,
        "security": [],
        "parameters": [_param("token")],
        "responses": responses,
    }


def _ingest_failure(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("IngestResult")}}}


def _ingest(operation_id: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["tracking"],
        "summary": summary,
        "description": (
            "Compatible with Segment's HTTP tracking API, so existing SDKs work by changing their "
            "host. Events are stored durably before the response; a repeated `messageId` is "
            "accepted and skipped. The write key may also be sent as `writeKey` in the body."
        ),
        "security": [{"writeKey": []}],
        "requestBody": {"required": True, "content": {JSON: {"schema": schema}}},
        "responses": {
            **_ok("Stored", _ref("IngestResult")),
            "400": _ingest_failure("An invalid event, or a body over its size limit."),
            "401": _ingest_failure("No write key, or one Safar does not know."),
            "429": _ingest_failure("Too many events for this write key; see Retry-After."),
        },
    }


def _tracking_paths() -> dict[str, Any]:
    batch = _ingest("ingest_batch", "Record many events at once", _ref("Batch"))
    paths = {"/v1/batch": {"post": batch}, "/v1/import": {"post": {**batch}}}
    paths["/v1/import"]["post"]["operationId"] = "ingest_import"
    paths["/v1/import"]["post"]["summary"] = "Record many events at once (same as /v1/batch)"
    for kind in _INGEST_EVENT_TYPES:
        # The path implies the type, so the body need not carry it.
        schema = {"allOf": [_ref("SegmentEvent"), {"properties": {"type": {"const": kind}}}]}
        paths[f"/v1/{kind}"] = {"post": _ingest(f"ingest_{kind}", f"Record one {kind}", schema)}
    return paths


def _paths() -> dict[str, Any]:
    ref_param = {"$ref": "#/components/parameters/ref"}
    limit_param = {"$ref": "#/components/parameters/limit"}
    paths: dict[str, Any] = {
        "/": {
            "get": _public(
                "home",
                "A page saying what this server is",
                _ok("HTML page", {"type": "string"}, "text/html"),
            )
        },
        "/healthz": {
            "get": _public("health", "Liveness and processing lag", _ok("Healthy", _ref("Health")))
        },
        "/openapi.json": {
            "get": _public(
                "openapi", "This OpenAPI document", _ok("OpenAPI 3.1", {"type": "object"})
            )
        },
        "/docs": {
            "get": _public(
                "docs",
                "This API's documentation as HTML",
                _ok("HTML page", {"type": "string"}, "text/html"),
            )
        },
        "/v1/profiles/{ref}": {
            "get": _profile_read(
                "get_profile",
                "A customer's profile",
                "The unified profile holding the identifier, including identifiers of profiles "
                "merged into it. It reflects events up to `processed_seq`.",
                parameters=[ref_param],
                responses={**_ok("The profile", _ref("Profile")), **_errors(400, 401, 403, 404)},
            )
        },
        "/v1/profiles/{ref}/events": {
            "get": _profile_read(
                "list_profile_events",
                "A customer's events, newest first",
                "Events of every identity merged into the profile. Pass `next` back as `cursor` "
                "for the following page; `next` is null on the last page.",
                parameters=[
                    ref_param,
                    limit_param,
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "The `next` value of the previous page.",
                        "schema": {"type": "string"},
                    },
                ],
                responses={
                    **_ok("A page of events", _ref("EventPage")),
                    **_errors(400, 401, 403, 404),
                },
            )
        },
        "/v1/profiles/{ref}/traits/history": {
            "get": _profile_read(
                "list_trait_history",
                "How a customer's traits changed, newest first",
                "Every trait change with the event that caused it.",
                parameters=[ref_param, limit_param],
                responses={
                    **_ok("Trait changes", _ref("TraitHistory")),
                    **_errors(400, 401, 403, 404),
                },
            )
        },
        "/v1/profiles/{ref}/merges": {
            "get": _profile_read(
                "list_merges",
                "Identity merges done and refused for a customer, oldest first",
                "Refused merges carry the rule that stopped them in `reason`.",
                parameters=[ref_param],
                responses={**_ok("Merges", _ref("MergeList")), **_errors(400, 401, 403, 404)},
            )
        },
    }
    return {
        **paths,
        **_journey_paths(),
        **_audience_paths(),
        **_message_paths(),
        **_link_paths(),
        **_tracking_paths(),
    }


def _journey_paths() -> dict[str, Any]:
    journey = [_param("journey_id")]
    problems = {
        "400": {
            "description": "The journey file has problems; each names its line and field.",
            "content": {JSON: {"schema": _ref("Problems")}},
        }
    }
    version = _ok("The version", _ref("JourneyVersion"))

    def action(name: str, summary: str, description: str) -> dict[str, Any]:
        return _managed(
            f"{name}_journey",
            "journeys",
            "write",
            summary,
            description,
            parameters=journey,
            responses={**version, **_errors(401, 403, 404, 409)},
        )

    yaml_body = {"schema": {"type": "string", "description": "The journey file (YAML)."}}
    return {
        "/v1/journeys": {
            "get": _managed(
                "list_journeys",
                "journeys",
                "read",
                "Every journey, by id",
                "Each journey's newest version, and `live_version`: the version customers enter.",
                responses={**_ok("Journeys", _ref("JourneyList")), **_errors(401, 403)},
            ),
            "post": _managed(
                "create_journey",
                "journeys",
                "write",
                "Save a journey file as a draft, or publish it",
                "Send the file as `application/yaml` (`?publish=true` to publish it), or JSON "
                "with `yaml`, `publish` and `migration`. The file is validated as `safar "
                "validate` does. Saving replaces the current draft. Publishing the definition "
                "already published changes nothing and answers 200 with `changed: false`.",
                parameters=[
                    {
                        "name": "publish",
                        "in": "query",
                        "required": False,
                        "description": "With a YAML body: `true` to publish, not only save.",
                        "schema": {"type": "boolean", "default": False},
                    }
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/yaml": yaml_body,
                        "text/plain": yaml_body,
                        JSON: {"schema": _ref("JourneyFile")},
                    },
                },
                responses={
                    "201": {
                        "description": "Saved or published as a new version",
                        "content": {JSON: {"schema": _ref("JourneyVersion")}},
                    },
                    **_ok("Already published as it is", _ref("JourneyVersion")),
                    **problems,
                    **_errors(401, 403, 409),
                },
            ),
        },
        "/v1/journeys/{id}": {
            "get": _managed(
                "get_journey",
                "journeys",
                "read",
                "A journey's versions",
                "Every version, oldest first, with its status and definition.",
                parameters=journey,
                responses={**_ok("The journey", _ref("Journey")), **_errors(401, 403, 404)},
            )
        },
        "/v1/journeys/{id}/publish": {
            "post": _managed(
                "publish_journey",
                "journeys",
                "write",
                "Publish the current draft",
                "Customers enter the newest published version; `migration` says what happens to "
                "those inside older ones (`stay`, the default, or `move` with a step map). 409 "
                "when the journey has no draft.",
                parameters=journey,
                requestBody=_json_body(_ref("PublishOptions"), required=False),
                responses={**version, **problems, **_errors(401, 403, 404, 409)},
            )
        },
        "/v1/journeys/{id}/pause": {
            "post": action("pause", "Pause a journey", "No new entries; customers inside go on.")
        },
        "/v1/journeys/{id}/resume": {
            "post": action("resume", "Resume a paused journey", "Customers may enter again.")
        },
        "/v1/journeys/{id}/stop": {
            "post": action(
                "stop",
                "Stop a journey for good",
                "No entries, and each customer inside leaves the next time anything happens to "
                "them; nothing more is sent. A stopped journey cannot be published again.",
            )
        },
        "/v1/journeys/{id}/entries": {
            "post": _managed(
                "enter_journey",
                "journeys",
                "write",
                "Ask for a customer to enter a journey",
                "The journey must be published with `entry.api: true`, and a profile must hold "
                "the identifier. The request is queued in the event log and carried out by the "
                "journey runtime; a request repeated with the same `request_id` is ignored.",
                parameters=journey,
                requestBody=_json_body(_ref("EntryRequest")),
                responses={
                    "202": {
                        "description": "Accepted",
                        "content": {JSON: {"schema": _ref("EntryAccepted")}},
                    },
                    **_errors(400, 401, 403, 404),
                },
            )
        },
        "/v1/profiles/{ref}/journeys": {
            "get": _managed(
                "list_profile_journeys",
                "journeys",
                "read",
                "The journeys a customer entered, newest first",
                "Each pass through a journey with where it is or why it ended, and its steps.",
                parameters=[_param("ref"), _param("limit")],
                responses={
                    **_ok("Journey runs", _ref("JourneyRunList")),
                    **_errors(400, 401, 403, 404),
                },
            )
        },
    }


#: The two kinds of audience definition: (operation id noun, path, what people call one).
_AUDIENCE_KINDS: Final = (
    ("segment", "/v1/segments", "segment"),
    ("computed_trait", "/v1/computed-traits", "computed trait"),
)


def _audience_kind_paths(name: str, base: str, noun: str) -> dict[str, Any]:
    """The paths both kinds of audience definition have."""
    audience = [_param("audience_id")]
    problems = {
        "400": {
            "description": "The file has problems (each names its line and field), or is of the "
            "other kind, or a parameter is malformed.",
            "content": {JSON: {"schema": _ref("Problems")}},
        }
    }
    version = _ok("The version", _ref("AudienceVersion"))
    paths: dict[str, Any] = {}
    file = "SegmentFile" if name == "segment" else "ComputedTraitFile"
    yaml_body = {"schema": {"type": "string", "description": f"The {noun} file (YAML)."}}
    body = {
        "required": True,
        "content": {
            "application/yaml": yaml_body,
            "text/plain": yaml_body,
            JSON: {"schema": _ref(file)},
        },
    }

    def managed(operation: str, scope: str, summary: str, text: str, **extra: Any) -> Any:
        plural = "s" if operation == "list" else ""
        return _managed(f"{operation}_{name}{plural}", "audiences", scope, summary, text, **extra)

    preview_schema = "SegmentPreview" if name == "segment" else "ComputedTraitPreview"
    paths[base] = {
        "get": managed(
            "list",
            "read",
            f"Every {noun}, by id",
            "Each one's newest version, `live_version`, and for a published one its `state` "
            "(`computing` until the audience processor has evaluated it for everyone, then "
            "`ready`)" + (" and `size`." if name == "segment" else "."),
            responses={**_ok("The list", _ref("AudienceList")), **_errors(401, 403)},
        ),
        "post": managed(
            "create",
            "write",
            f"Save a {noun} file as a draft, or publish it",
            "Send the file as `application/yaml`, or the same document as JSON; "
            "`?publish=true` publishes it. It is validated as `safar validate` does, "
            "`member:` may name published segments and may not close a cycle through them. "
            "Saving replaces the current draft; publishing what is already published "
            "changes nothing and answers 200 with `changed: false`. 409 when the id is "
            "taken by the other kind.",
            parameters=[_param("publish")],
            requestBody=body,
            responses={
                "201": {
                    "description": "Saved or published as a new version",
                    "content": {JSON: {"schema": _ref("AudienceVersion")}},
                },
                **_ok("Already published as it is", _ref("AudienceVersion")),
                **problems,
                **_errors(401, 403, 409),
            },
        ),
    }
    paths[f"{base}/preview"] = {
        "post": managed(
            "preview",
            "write",
            f"Evaluate a draft {noun} over every customer's history",
            "Stores nothing. The draft is evaluated from scratch, with the published "
            "segments and computed traits, for every customer with SQL over a copy of the "
            "events and profiles kept up to date between previews (the first preview builds "
            "it), or for the first `limit` customers from their histories.",
            parameters=[_param("sample"), _param("evaluate_limit")],
            requestBody=body,
            responses={
                **_ok("The preview", _ref(preview_schema)),
                **problems,
                **_errors(401, 403),
            },
        )
    }
    paths[base + "/{id}"] = {
        "get": managed(
            "get",
            "read",
            f"A {noun} and its versions",
            "The newest definition, every version oldest first, and where the live one is.",
            parameters=audience,
            responses={**_ok("It", _ref("Audience")), **_errors(401, 403, 404)},
        )
    }
    paths[base + "/{id}/publish"] = {
        "post": managed(
            "publish",
            "write",
            "Publish the current draft",
            "Checked again against what is live. 409 when there is no draft.",
            parameters=audience,
            responses={**version, **problems, **_errors(401, 403, 404, 409)},
        )
    }
    paths[base + "/{id}/archive"] = {
        "post": managed(
            "archive",
            "write",
            f"Archive the live {noun}",
            "It is no longer kept current nor shown in profiles. 409 when it is not "
            "published, or (a segment) when published segments name it with `member:`.",
            parameters=audience,
            responses={**version, **_errors(401, 403, 404, 409)},
        )
    }
    paths[base + "/{id}/repair"] = {
        "post": managed(
            "repair",
            "write",
            f"Rebuild the live {noun} from the stored events",
            "The audience processor picks the request up within seconds and rebuilds it in "
            "the background: the history of the events it reads is folded again, and "
            "segments are evaluated for every customer again, with an entry or exit for "
            "each membership that was wrong. Its `state` is `computing` until then, then "
            "`ready`. 409 when it is not published.",
            parameters=audience,
            responses={
                "202": {
                    "description": "Requested",
                    "content": {JSON: {"schema": _ref("AudienceRepair")}},
                },
                **_errors(401, 403, 404, 409),
            },
        )
    }
    return paths


def _audience_paths() -> dict[str, Any]:
    audience = [_param("audience_id")]
    paths: dict[str, Any] = {}
    for name, base, noun in _AUDIENCE_KINDS:
        paths.update(_audience_kind_paths(name, base, noun))
    paths["/v1/segments/{id}/members"] = {
        "get": _managed(
            "list_segment_members",
            "audiences",
            "read",
            "A page of a segment's members, by profile id",
            "As the audience processor last committed. Pass `next` back as `after` for the "
            "following page; `next` is null on the last page. 409 when the segment is not "
            "published.",
            parameters=[
                *audience,
                _param("limit"),
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "The `next` value of the previous page.",
                    "schema": {"type": "string"},
                },
            ],
            responses={**_ok("Members", _ref("MemberPage")), **_errors(400, 401, 403, 404, 409)},
        )
    }
    export = {"schema": {"type": "string"}}
    paths["/v1/segments/{id}/export"] = {
        "get": _managed(
            "export_segment",
            "audiences",
            "read",
            "Every member of a segment, as a CSV or JSONL file",
            "Streamed as an attachment, one customer a row: `profile_id`, `since`, the first "
            "`user_id`, `email`, `phone` and `anonymous_id`, and in JSONL all `identifiers`. "
            "409 when the segment is not published.",
            parameters=[
                *audience,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["csv", "jsonl"], "default": "csv"},
                },
            ],
            responses={
                "200": {
                    "description": "The members",
                    "content": {"text/csv": export, "application/x-ndjson": export},
                },
                **_errors(400, 401, 403, 404, 409),
            },
        )
    }
    return paths


def _message_paths() -> dict[str, Any]:
    ref = [_param("ref")]
    item = [_param("ref"), _param("item_id")]
    not_found = _errors(400, 401, 403, 404)

    def mark(action: str, summary: str) -> dict[str, Any]:
        return _managed(
            f"{action}_inbox_item",
            "messages",
            "write",
            summary,
            "Marking again keeps the first time.",
            parameters=item,
            responses={**_ok("The item", _ref("InboxItem")), **not_found},
        )

    return {
        "/v1/profiles/{ref}/decisions": {
            "get": _managed(
                "list_decisions",
                "messages",
                "read",
                "Why each message was sent, delayed or not sent, newest first",
                "The policy gate's decision for every message a journey wanted to send this "
                "customer, with the `rule` that decided (consent, suppression, frequency cap, "
                "quiet hours, priority, ...).",
                parameters=[*ref, _param("limit")],
                responses={**_ok("Decisions", _ref("DecisionList")), **not_found},
            )
        },
        "/v1/profiles/{ref}/consent": {
            "get": _managed(
                "list_consent",
                "messages",
                "read",
                "A customer's consent choices",
                "One choice per channel and category (`*`: every category).",
                parameters=ref,
                responses={**_ok("Choices", _ref("ConsentList")), **not_found},
            ),
            "put": _managed(
                "set_consent",
                "messages",
                "write",
                "Record a customer's consent choice",
                "Takes effect for messages decided from now on, and is appended to the event log "
                "as a `Consent Changed` event (properties `channel`, `category`, `subscribed`, "
                "`source`), so segments reading consent are evaluated again.",
                parameters=ref,
                requestBody=_json_body(_ref("ConsentChoice")),
                responses={**_ok("The choice", _ref("Consent")), **not_found},
            ),
        },
        "/v1/profiles/{ref}/inbox": {
            "get": _managed(
                "list_inbox",
                "messages",
                "read",
                "A customer's in-app messages, newest first",
                "Dismissed ones only with `include_dismissed=true`.",
                parameters=[
                    *ref,
                    {
                        "name": "include_dismissed",
                        "in": "query",
                        "required": False,
                        "description": "`true` to list dismissed messages too.",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                responses={**_ok("In-app messages", _ref("InboxList")), **not_found},
            )
        },
        "/v1/profiles/{ref}/inbox/{item_id}/read": {
            "post": mark("read", "Mark an in-app message read")
        },
        "/v1/profiles/{ref}/inbox/{item_id}/dismiss": {
            "post": mark("dismiss", "Dismiss an in-app message")
        },
        "/v1/outbox/dead": {
            "get": _managed(
                "list_dead_letters",
                "messages",
                "admin",
                "Commands that failed for good, newest first",
                "Sends, webhooks and events whose delivery ran out of attempts.",
                parameters=[_param("limit")],
                responses={**_ok("Dead letters", _ref("DeadLetterList")), **_errors(400, 401, 403)},
            )
        },
    }


def _link_paths() -> dict[str, Any]:
    page = {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
    invalid = {"400": {**page, "description": "The link is not valid (HTML page)."}}
    return {
        "/l/u/{token}": {
            "get": _link(
                "unsubscribe_page",
                "Unsubscribe page",
                "Asks the customer to confirm; nothing changes until they press the button.",
                {"200": page, **invalid},
            ),
            "post": _link(
                "unsubscribe",
                "Unsubscribe",
                "Opts the customer out of the message's channel and category and records an "
                "`Unsubscribed` event. Also RFC 8058 one-click (`List-Unsubscribe=One-Click`).",
                {"200": page, **invalid},
            ),
        },
        "/l/o/{token}": {
            "get": _link(
                "open_pixel",
                "Open pixel",
                "A 1x1 GIF; records `Email Opened` once per message.",
                {**_ok("A 1x1 GIF", {"type": "string"}, "image/gif"), **_errors(400)},
            )
        },
        "/l/c/{token}": {
            "get": _link(
                "click",
                "Tracked link",
                "Records `Email Clicked` and redirects to the link's http(s) target.",
                {"302": {"description": "Redirect to the target"}, **_errors(400)},
            )
        },
        "/l/s/{token}": {
            "post": _link(
                "status",
                "Delivery report",
                "A provider's delivery report (Twilio `StatusCallback` form with `MessageStatus`):"
                " `delivered` records `Message Delivered`, `undelivered` and `failed` record"
                " `Message Failed`; each once per message.",
                {"204": {"description": "Recorded"}, **_errors(400)},
            )
        },
    }


def _schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What was wrong and what to do."},
                "location": {"type": "string", "description": "Where: a parameter or field."},
                "retry_after": {"type": "number", "description": "Seconds to wait (429 only)."},
            },
        },
        "Profile": {
            "type": "object",
            "required": ["id", "identifiers", "traits", "first_seen", "last_seen", "merged_from"],
            "properties": {
                "id": {"type": "string"},
                "identifiers": {
                    "type": "object",
                    "description": "Identifier type to values, e.g. email to addresses.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "traits": {"type": "object"},
                "first_seen": time,
                "last_seen": time,
                "merged_from": {"type": "array", "items": {"type": "string"}},
                "segments": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Ids of the published segments the customer is in.",
                },
                "processed_seq": {
                    "type": "integer",
                    "description": "The profile reflects events up to this seq.",
                },
            },
        },
        "Event": {
            "type": "object",
            "description": "An event as sent, with Safar's normalized fields applied.",
            "required": ["type", "messageId", "timestamp", "receivedAt"],
            "properties": {
                "type": {"enum": list(_INGEST_EVENT_TYPES)},
                "messageId": {"type": "string"},
                "event": {"type": "string", "description": "The event name of a track."},
                "name": {"type": "string", "description": "The page or screen name."},
                "userId": {"type": "string"},
                "anonymousId": {"type": "string"},
                "timestamp": time,
                "receivedAt": time,
                "properties": {"type": "object"},
                "traits": {"type": "object"},
                "context": {"type": "object"},
            },
        },
        "EventPage": {
            "type": "object",
            "required": ["data", "next"],
            "properties": {
                "data": {"type": "array", "items": _ref("Event")},
                "next": {"type": ["string", "null"], "description": "Cursor of the next page."},
            },
        },
        "TraitChange": {
            "type": "object",
            "required": ["key", "value", "timestamp", "message_id", "seq"],
            "properties": {
                "key": {"type": "string"},
                "value": {"description": "The new value; null when the trait was removed."},
                "timestamp": time,
                "message_id": {"type": "string"},
                "seq": {"type": "integer"},
            },
        },
        "TraitHistory": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "array", "items": _ref("TraitChange")}},
        },
        "MergeRecord": {
            "type": "object",
            "required": ["into", "other", "refused", "reason", "message_id", "at"],
            "properties": {
                "into": {"type": "string", "description": "The surviving profile id."},
                "other": {
                    "type": "string",
                    "description": "The profile merged, or not merged, in.",
                },
                "refused": {"type": "boolean"},
                "reason": {"type": "string"},
                "message_id": {"type": "string", "description": "The event that linked them."},
                "at": time,
            },
        },
        "MergeList": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "array", "items": _ref("MergeRecord")}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "events", "processed_seq", "lag"],
            "properties": {
                "status": {"const": "ok"},
                "events": {"type": "integer", "description": "The last event seq in the log."},
                "processed_seq": {"type": "integer"},
                "lag": {"type": "integer", "description": "Events not yet processed."},
                "time": time,
            },
        },
        "SegmentEvent": {
            "type": "object",
            "description": "A Segment spec event; `userId` or `anonymousId` is required.",
            "properties": {
                "type": {"enum": list(_INGEST_EVENT_TYPES)},
                "messageId": {"type": "string", "description": "Deduplication key."},
                "userId": {"type": "string"},
                "anonymousId": {"type": "string"},
                "event": {"type": "string", "description": "Required for track."},
                "name": {"type": "string"},
                "properties": {"type": "object"},
                "traits": {"type": "object"},
                "groupId": {"type": "string", "description": "Required for group."},
                "previousId": {"type": "string", "description": "Required for alias."},
                "context": {"type": "object"},
                "timestamp": time,
                "sentAt": time,
                "writeKey": {"type": "string", "description": "Alternative to Basic auth."},
            },
        },
        "Batch": {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "items": {"allOf": [_ref("SegmentEvent"), {"required": ["type"]}]},
                },
                "context": {"type": "object", "description": "Merged into every event's context."},
                "sentAt": time,
                "writeKey": {"type": "string", "description": "Alternative to Basic auth."},
            },
        },
        "IngestResult": {
            "type": "object",
            "description": "Segment's reply shape: `success`, and `error` when it is false.",
            "required": ["success"],
            "properties": {"success": {"type": "boolean"}, "error": {"type": "string"}},
        },
    }


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref(name)}},
    }


def _journey_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    maybe_time = {"type": ["string", "null"], "format": "date-time"}
    status = {"enum": ["draft", "published", "paused", "stopped"]}
    migration = {
        "type": "object",
        "description": "What publishing does to customers inside older versions.",
        "properties": {
            "mode": {"enum": ["stay", "move"], "default": "stay"},
            "steps": {
                "type": "object",
                "description": "With `move`: old step id to new step id.",
                "additionalProperties": {"type": "string"},
            },
        },
    }
    return {
        "Migration": migration,
        "JourneyVersion": {
            "type": "object",
            "required": ["journey_id", "version", "status", "created_at", "definition"],
            "properties": {
                "journey_id": {"type": "string"},
                "version": {"type": "integer"},
                "status": status,
                "created_at": time,
                "published_at": maybe_time,
                "migration": _ref("Migration"),
                "definition": {
                    "type": "object",
                    "description": "The journey as parsed: steps carry `kind` and their line.",
                },
                "changed": {
                    "type": "boolean",
                    "description": "Only when saving or publishing: false if nothing changed.",
                },
            },
        },
        "Journey": {
            "type": "object",
            "required": ["id", "versions"],
            "properties": {
                "id": {"type": "string"},
                "versions": {"type": "array", "items": _ref("JourneyVersion")},
            },
        },
        "JourneySummary": {
            "type": "object",
            "required": ["id", "name", "version", "status"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "version": {"type": "integer", "description": "The newest version."},
                "status": status,
                "stage": {"type": ["string", "null"]},
                "published_at": maybe_time,
                "live_version": {
                    "type": ["integer", "null"],
                    "description": "The published or paused version, if any.",
                },
                "entry": {"type": "object"},
            },
        },
        "JourneyList": _list_of("JourneySummary"),
        "JourneyFile": {
            "type": "object",
            "required": ["yaml"],
            "properties": {
                "yaml": {"type": "string", "description": "The journey file."},
                "publish": {"type": "boolean", "default": False},
                "migration": _ref("Migration"),
            },
        },
        "PublishOptions": {"type": "object", "properties": {"migration": _ref("Migration")}},
        "Problems": {
            "type": "object",
            "required": ["error", "problems"],
            "properties": {
                "error": {"type": "string"},
                "problems": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["line", "field", "message"],
                        "properties": {
                            "line": {"type": "integer", "description": "1-based; 0 if unknown."},
                            "field": {"type": "string", "example": "steps[2].send.template"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
        "EntryRequest": {
            "type": "object",
            "required": ["profile"],
            "properties": {
                "profile": {"type": "string", "example": "user_id:42"},
                "request_id": {
                    "type": "string",
                    "description": "Makes retries safe: one entry per request id. Default: new.",
                },
                "context": {"type": "object", "description": "Added to the journey context."},
            },
        },
        "EntryAccepted": {
            "type": "object",
            "required": ["request_id", "accepted"],
            "properties": {
                "request_id": {"type": "string"},
                "accepted": {"const": True},
                "profile_id": {"type": "string"},
            },
        },
        "JourneyRun": {
            "type": "object",
            "required": ["id", "journey_id", "version", "status", "step", "entered_at", "visits"],
            "properties": {
                "id": {"type": "string"},
                "journey_id": {"type": "string"},
                "version": {"type": "integer"},
                "status": {"enum": ["active", "exited", "converted"]},
                "step": {"type": "string"},
                "entered_at": time,
                "ended_at": maybe_time,
                "exit_reason": {"type": ["string", "null"]},
                "waiting_for": {"type": ["string", "null"]},
                "wake_at": maybe_time,
                "visits": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "step": {"type": "string"},
                            "at": time,
                            "outcome": {"type": "string", "example": "branch:0"},
                        },
                    },
                },
            },
        },
        "JourneyRunList": _list_of("JourneyRun"),
    }


def _audience_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    maybe_time = {"type": ["string", "null"], "format": "date-time"}
    kind = {"enum": ["segment", "computed_trait"]}
    status = {"enum": ["draft", "published", "archived"]}
    live = {
        "live_version": {
            "type": ["integer", "null"],
            "description": "The published version, if any.",
        },
        "state": {
            "enum": ["computing", "ready", None],
            "description": "Where the audience processor is with the published version; null "
            "when none is.",
        },
        "size": {
            "type": ["integer", "null"],
            "description": "Segments: how many customers are in the published version.",
        },
    }
    summary = {
        "id": {"type": "string"},
        "kind": kind,
        "name": {"type": ["string", "null"]},
        "version": {"type": "integer", "description": "The newest version."},
        "status": status,
        "published_at": maybe_time,
        **live,
    }
    identifiers = {
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    }
    return {
        "AudienceVersion": {
            "type": "object",
            "required": ["id", "kind", "version", "status", "created_at", "definition"],
            "properties": {
                "id": {"type": "string"},
                "kind": kind,
                "version": {"type": "integer"},
                "status": status,
                "created_at": time,
                "published_at": maybe_time,
                "definition": {
                    "type": "object",
                    "description": "As parsed: conditions carry `kind` and their line.",
                },
                "changed": {
                    "type": "boolean",
                    "description": "Only when saving or publishing: false if nothing changed.",
                },
            },
        },
        "AudienceRepair": {
            "description": "The live version a repair was requested of.",
            "allOf": [
                _ref("AudienceVersion"),
                {
                    "type": "object",
                    "required": ["repairs_requested"],
                    "properties": {
                        "repairs_requested": {
                            "type": "integer",
                            "description": "How many repairs of it have been requested, this "
                            "one included.",
                        }
                    },
                },
            ],
        },
        "AudienceSummary": {
            "type": "object",
            "required": ["id", "kind", "version", "status", "live_version", "state"],
            "properties": summary,
        },
        "AudienceList": _list_of("AudienceSummary"),
        "Audience": {
            "type": "object",
            "required": ["id", "kind", "version", "status", "definition", "versions"],
            "properties": {
                **summary,
                "definition": {"type": "object", "description": "The newest version's."},
                "versions": {"type": "array", "items": _ref("AudienceVersion")},
            },
        },
        "SegmentFile": {
            "type": "object",
            "description": "A segment file as JSON; see docs/audiences.md.",
            "required": ["id", "name", "where"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "where": {"type": "object", "example": {"trait": "vip", "eq": True}},
                "webhook": {"type": "string", "format": "uri"},
            },
        },
        "ComputedTraitFile": {
            "type": "object",
            "description": "A computed trait file as JSON; see docs/audiences.md.",
            "required": ["id", "compute"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "compute": {
                    "type": "object",
                    "required": ["event"],
                    "properties": {
                        "event": {"type": "string"},
                        "kind": {"type": "string", "default": "count"},
                        "where": {"type": "string"},
                        "value": {"type": "string", "example": "properties.revenue"},
                        "within": {"type": "string", "example": "30d"},
                    },
                },
            },
        },
        "Member": {
            "type": "object",
            "required": ["profile_id", "identifiers", "since"],
            "properties": {
                "profile_id": {"type": "string"},
                "identifiers": identifiers,
                "since": {**time, "description": "When they entered."},
            },
        },
        "MemberPage": {
            "type": "object",
            "required": ["data", "next"],
            "properties": {
                "data": {"type": "array", "items": _ref("Member")},
                "next": {"type": ["string", "null"], "description": "`after` of the next page."},
            },
        },
        "SegmentPreview": {
            "type": "object",
            "required": ["size", "sample", "evaluated", "took_ms"],
            "properties": {
                "size": {"type": "integer", "description": "Customers in the draft."},
                "sample": {
                    "type": "array",
                    "description": "The first members by profile id, with the computed traits "
                    "and segments the preview found.",
                    "items": _ref("Profile"),
                },
                "evaluated": {"type": "integer", "description": "Customers evaluated."},
                "took_ms": {"type": "integer"},
            },
        },
        "ComputedTraitPreview": {
            "type": "object",
            "required": ["summary", "sample", "evaluated", "took_ms"],
            "properties": {
                "summary": {
                    "type": "object",
                    "properties": {
                        "count": {"type": "integer", "description": "Customers with a value."},
                        "min": {"type": ["number", "null"]},
                        "max": {"type": ["number", "null"]},
                        "top": {
                            "type": "array",
                            "description": "The most common text values, at most 10.",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "value": {"type": "string"},
                                    "count": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "sample": {
                    "type": "array",
                    "description": "The first customers with a value, by profile id.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "profile_id": {"type": "string"},
                            "identifiers": identifiers,
                            "value": {},
                        },
                    },
                },
                "evaluated": {"type": "integer"},
                "took_ms": {"type": "integer"},
            },
        },
    }


def _message_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    maybe_time = {"type": ["string", "null"], "format": "date-time"}
    return {
        "Decision": {
            "type": "object",
            "required": ["message_key", "journey_id", "channel", "at", "outcome", "rule"],
            "properties": {
                "message_key": {"type": "string"},
                "journey_id": {"type": "string"},
                "step_id": {"type": "string"},
                "channel": {"type": "string"},
                "category": {"type": "string"},
                "at": time,
                "outcome": {"enum": ["sent", "delayed", "suppressed", "failed"]},
                "rule": {"type": "string", "example": "frequency_cap:marketing_email_weekly"},
                "detail": {"type": "string"},
                "until": {**maybe_time, "description": "When a delayed message is tried again."},
            },
        },
        "DecisionList": _list_of("Decision"),
        "ConsentChoice": {
            "type": "object",
            "required": ["channel", "category", "subscribed"],
            "properties": {
                "channel": {"enum": list(CHANNELS)},
                "category": {"type": "string", "description": "E.g. `marketing`; `*` for all."},
                "subscribed": {"type": "boolean"},
            },
        },
        "Consent": {
            "type": "object",
            "required": ["channel", "category", "subscribed", "at", "source"],
            "properties": {
                "channel": {"type": "string"},
                "category": {"type": "string"},
                "subscribed": {"type": "boolean"},
                "at": time,
                "source": {"type": "string", "description": "`api`, `link`, ..."},
            },
        },
        "ConsentList": _list_of("Consent"),
        "InboxItem": {
            "type": "object",
            "required": ["id", "created_at"],
            "properties": {
                "id": {"type": "string"},
                "created_at": time,
                "subject": {"type": ["string", "null"]},
                "text": {"type": ["string", "null"]},
                "data": {"type": "object"},
                "read_at": maybe_time,
                "dismissed_at": maybe_time,
            },
        },
        "InboxList": _list_of("InboxItem"),
        "DeadLetter": {
            "type": "object",
            "required": ["key", "kind", "profile_id", "attempts"],
            "properties": {
                "key": {"type": "string"},
                "kind": {"enum": ["send", "webhook", "event"]},
                "journey_id": {"type": ["string", "null"], "description": "Sends only."},
                "profile_id": {"type": "string"},
                "due": time,
                "attempts": {"type": "integer"},
                "last_error": {"type": ["string", "null"]},
            },
        },
        "DeadLetterList": _list_of("DeadLetter"),
    }


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def openapi_document() -> dict[str, Any]:
    """Safar's OpenAPI 3.1 document, freshly built (callers may change their copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safar",
            "version": __version__,
            "summary": "Customer journey orchestration: tracking, profiles, audiences, journeys.",
            "description": (
                "Management calls live under `/v1/` and need an API key sent as "
                "`Authorization: Bearer <key>`; `read` keys can read, `write` keys can also change "
                "things, `admin` keys can do everything. The Segment-compatible tracking endpoints "
                'take a source\'s write key instead. Errors are JSON: `{"error": "..."}`.'
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "profiles", "description": "Unified customer profiles."},
            {"name": "journeys", "description": "Journeys: definitions, lifecycle, entries."},
            {
                "name": "audiences",
                "description": "Segments and computed traits: definitions, lifecycle, members, "
                "exports and previews.",
            },
            {
                "name": "messages",
                "description": "Messages: policy decisions, consent, in-app inbox, dead letters.",
            },
            {
                "name": "links",
                "description": "Links in messages (unsubscribe, opens, clicks); the signed "
                "token is the authorization.",
            },
            {"name": "tracking", "description": "Segment-compatible event ingestion."},
            {"name": "server", "description": "This server, its health and documentation."},
        ],
        "security": [{"apiKey": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A management API key with scope read, write or admin.",
                },
                "writeKey": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A source's write key as the user name, with an empty password.",
                },
            },
            "parameters": {
                "ref": {
                    "name": "ref",
                    "in": "path",
                    "required": True,
                    "description": (
                        "An identifier as `type:value`, e.g. `user_id:42` or "
                        "`email:sara@example.com`; emails and phones are normalized before lookup."
                    ),
                    "schema": {"type": "string", "pattern": "^[^:]+:.+$"},
                },
                "journey_id": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "The journey's id, as in its file.",
                    "schema": {"type": "string"},
                },
                "audience_id": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "The segment's or computed trait's id, as in its file.",
                    "schema": {"type": "string"},
                },
                "publish": {
                    "name": "publish",
                    "in": "query",
                    "required": False,
                    "description": "`true` to publish, not only save.",
                    "schema": {"type": "boolean", "default": False},
                },
                "sample": {
                    "name": "sample",
                    "in": "query",
                    "required": False,
                    "description": "How many customers to show: 0 to 100, default 10.",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 100, "default": 10},
                },
                "evaluate_limit": {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Evaluate only the first this many customers (default: all).",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "item_id": {
                    "name": "item_id",
                    "in": "path",
                    "required": True,
                    "description": "An in-app message's id.",
                    "schema": {"type": "string"},
                },
                "token": {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": "The signed token from the message's link.",
                    "schema": {"type": "string"},
                },
                "limit": {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "How many items to return: 1 to 1000, default 50.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                },
            },
            "responses": {
                "400": _error_response("A malformed parameter or body; `location` names it."),
                "401": _error_response("No key, or a key Safar does not know."),
                "403": _error_response("The key's scope does not allow this call."),
                "404": _error_response("Nothing matches."),
                "409": _error_response("Not allowed in the current state."),
            },
            "schemas": {
                **_schemas(),
                **_journey_schemas(),
                **_audience_schemas(),
                **_message_schemas(),
            },
        },
    }


def render_docs(document: dict[str, Any]) -> str:
    """An HTML page listing every operation in ``document``, grouped by tag."""
    schemes = document["components"]["securitySchemes"]
    shared = document["components"].get("parameters", {})
    sections: list[str] = []
    for tag in document["tags"]:
        items = [
            _render_operation(path, method, operation, schemes, shared)
            for path, methods in document["paths"].items()
            for method, operation in methods.items()
            if tag["name"] in operation.get("tags", [])
        ]
        sections.append(
            f"<h2>{escape(tag['name'])}</h2><p>{_text(tag['description'])}</p>{''.join(items)}"
        )
    info = document["info"]
    return _DOCS_PAGE.format(
        title=escape(info["title"]),
        version=escape(info["version"]),
        description=_text(info["description"]),
        sections="".join(sections),
    )


def _render_operation(
    path: str,
    method: str,
    operation: dict[str, Any],
    schemes: dict[str, Any],
    shared: dict[str, Any],
) -> str:
    names = [name for requirement in operation.get("security", []) for name in requirement]
    auth = "; ".join(f"{name}: {schemes[name]['description']}" for name in names) or "none"
    rows = "".join(
        f"<tr><td><code>{escape(param['name'])}</code></td><td>{escape(param['in'])}</td>"
        f"<td>{_text(param.get('description', ''))}</td></tr>"
        for param in _parameters(operation, shared)
    )
    params = f"<table><tr><th>Parameter</th><th>In</th><th></th></tr>{rows}</table>" if rows else ""
    codes = ", ".join(escape(code) for code in operation["responses"])
    return (
        f'<section id="{escape(operation["operationId"])}">'
        f'<h3><span class="method">{escape(method.upper())}</span> <code>{escape(path)}</code></h3>'
        f"<p>{_text(operation['summary'])}</p>"
        f"<p>{_text(operation.get('description', ''))}</p>"
        f"<p><b>Authentication:</b> {escape(auth)}</p>{params}"
        f"<p><b>Responses:</b> {codes}</p></section>"
    )


def _text(markdown: str) -> str:
    """Escaped text with Markdown code spans as ``<code>``: the only markup the document uses."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def _parameters(operation: dict[str, Any], shared: dict[str, Any]) -> list[dict[str, Any]]:
    """The operation's parameters with references to shared ones resolved."""
    return [
        shared[param["$ref"].rsplit("/", 1)[1]] if "$ref" in param else param
        for param in operation.get("parameters", [])
    ]


def openapi_routes(document: dict[str, Any] | None = None) -> list[Route]:
    """``/openapi.json`` and ``/docs`` for ``document`` (default: :func:`openapi_document`)."""
    doc = openapi_document() if document is None else document
    # Both are static: render once, not per request.
    body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    page = render_docs(doc)

    def serve_document(request: Request) -> Response:
        return Response(body, media_type=JSON)

    def serve_docs(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    return [
        Route("/openapi.json", serve_document, methods=["GET"]),
        Route("/docs", serve_docs, methods=["GET"]),
    ]


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
section {{ border-top: 1px solid #ddd; padding: .5rem 0; }}
.method {{ display: inline-block; min-width: 3.5rem; font-size: .8rem; background: #225;
          color: #fff; padding: .1rem .4rem; border-radius: .2rem; text-align: center; }}
code {{ background: #f3f3f3; padding: 0 .25rem; }}
td, th {{ text-align: start; padding: .1rem .6rem .1rem 0; vertical-align: top; }}
</style>
</head>
<body>
<h1>{title} API <small>{version}</small></h1>
<p>{description}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
{sections}
</body>
</html>
"""
