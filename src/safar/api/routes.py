"""The management API's routes, wired to the stores they read."""

from __future__ import annotations

from starlette.routing import BaseRoute

from safar.api.auth import ApiKeyAuth
from safar.api.home import home_routes
from safar.api.openapi import openapi_routes
from safar.api.profiles import profile_routes
from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.ports import Clock, EventLog, KeyStore, ProfileReader


def management_routes(
    *,
    keys: KeyStore,
    events: EventLog,
    profiles: ProfileReader,
    clock: Clock,
    identity: IdentitySettings | None = None,
) -> list[BaseRoute]:
    """Every management route: ``/``, ``/healthz``, ``/openapi.json``, ``/docs``, ``/v1/profiles``.

    The app serving them should register :data:`safar.api.errors.EXCEPTION_HANDLERS`, so errors
    become JSON. Ingestion routes are separate (``safar.ingest``). ``identity`` (default: the
    default settings) must be the installation's, so refs normalize as events' identifiers did.
    """
    auth = ApiKeyAuth(keys)
    rules = IdentityRules(identity or IdentitySettings())
    return [
        *home_routes(events=events, profiles=profiles, clock=clock),
        *openapi_routes(),
        *profile_routes(auth, events=events, profiles=profiles, rules=rules),
    ]
