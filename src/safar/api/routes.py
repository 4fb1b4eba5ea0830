"""The management API's routes, wired to the stores they read."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute

from safar.api.audiences import audience_routes
from safar.api.auth import ApiKeyAuth
from safar.api.home import home_routes
from safar.api.journeys import journey_routes, run_routes
from safar.api.links import link_routes
from safar.api.messages import dead_letter_routes, message_routes
from safar.api.openapi import openapi_routes
from safar.api.profiles import profile_routes
from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.ports import (
    AudienceCatalog,
    AudienceStore,
    Clock,
    DeliveryStore,
    EventLog,
    JourneyStore,
    KeyStore,
    Outbox,
    ProfileReader,
    RunStore,
)
from safar.runtime.audience_view import AudienceReader
from safar.runtime.links import Links
from safar.runtime.warehouse_keeper import KeptWarehouse


def management_routes(
    *,
    keys: KeyStore,
    events: EventLog,
    profiles: ProfileReader,
    clock: Clock,
    identity: IdentitySettings | None = None,
    journeys: JourneyStore | None = None,
    runs: RunStore | None = None,
    outbox: Outbox | None = None,
    delivery: DeliveryStore | None = None,
    links: Links | None = None,
    templates_dir: Path | None = None,
    audience_catalog: AudienceCatalog | None = None,
    audiences: AudienceStore | None = None,
    warehouse_path: Path | None = None,
    partitions: int = 0,
) -> list[BaseRoute]:
    """Every management route: ``/``, ``/healthz``, ``/openapi.json``, ``/docs``, ``/v1/profiles``,
    and those of the stores given:

    - ``journeys``: ``/v1/journeys`` (``templates_dir``: the templates ``send`` steps are checked
      against, when it exists);
    - ``runs``: ``/v1/profiles/{ref}/journeys``;
    - ``delivery``: decisions, consent and inbox under ``/v1/profiles/{ref}``;
    - ``outbox``: ``/v1/outbox/dead``;
    - ``links`` with ``delivery``: the public link endpoints under ``/l/``;
    - ``audience_catalog`` with ``audiences``: ``/v1/segments`` and ``/v1/computed-traits``,
      and every route then reads profiles through an
      :class:`~safar.runtime.audience_view.AudienceReader` (computed traits among ``traits``,
      and ``segments``), refreshed at once when a definition is published or archived here.
      Previews are answered over a warehouse kept in the DuckDB file ``warehouse_path``, or in
      memory when it is None (:mod:`safar.runtime.warehouse_keeper`). ``partitions``: the work
      feed's (0 without one), where partition owners keep audiences.

    The app serving them should register :data:`safar.api.errors.EXCEPTION_HANDLERS`, so errors
    become JSON. Ingestion routes are separate (``safar.ingest``). ``identity`` (default: the
    default settings) must be the installation's, so refs normalize as events' identifiers did.
    """
    auth = ApiKeyAuth(keys)
    rules = IdentityRules(identity or IdentitySettings())
    plain = profiles
    routes: list[BaseRoute] = [
        *home_routes(events=events, profiles=plain, clock=clock),
        *openapi_routes(),
    ]
    if audience_catalog is not None and audiences is not None:
        reader = AudienceReader(plain, audiences, audience_catalog, clock, partitions=partitions)
        profiles = reader
        routes += audience_routes(
            auth,
            catalog=audience_catalog,
            store=audiences,
            profiles=plain,
            events=events,
            delivery=delivery,
            clock=clock,
            on_change=reader.invalidate,
            warehouse=KeptWarehouse(
                events, plain, delivery, identity or IdentitySettings(), warehouse_path
            ),
        )
    routes += profile_routes(auth, events=events, profiles=profiles, rules=rules)
    if journeys is not None:
        routes += journey_routes(
            auth,
            journeys=journeys,
            events=events,
            profiles=profiles,
            rules=rules,
            clock=clock,
            templates_dir=templates_dir,
        )
    if runs is not None:
        routes += run_routes(auth, runs=runs, profiles=profiles, rules=rules)
    if delivery is not None:
        routes += message_routes(
            auth, delivery=delivery, events=events, profiles=profiles, rules=rules, clock=clock
        )
    if outbox is not None:
        routes += dead_letter_routes(auth, outbox=outbox)
    if links is not None and delivery is not None:
        routes += link_routes(
            links=links, delivery=delivery, events=events, profiles=profiles, clock=clock
        )
    return routes
