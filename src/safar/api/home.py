"""``GET /`` (a small page saying what this server is) and ``GET /healthz`` (liveness and lag).

Neither needs an API key: they reveal only counters, and load balancers must reach ``/healthz``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from safar import __version__
from safar.model.events import iso
from safar.ports import Clock, EventLog, ProfileReader


class HomeEndpoints:
    """The two public endpoints. Sync: the stores block, so Starlette runs them in threads."""

    def __init__(self, *, events: EventLog, profiles: ProfileReader, clock: Clock) -> None:
        self._events = events
        self._profiles = profiles
        self._clock = clock

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` reports: the log's last seq, how far processing got, and the gap."""
        last_seq = self._events.last_seq()
        processed = self._profiles.processed_seq()
        return {
            "status": "ok",
            "events": last_seq,
            "processed_seq": processed,
            "lag": max(0, last_seq - processed),
            "time": iso(self._clock.now_ms()),
        }

    def healthz(self, request: Request) -> JSONResponse:
        """``GET /healthz``."""
        return JSONResponse(self.status())

    def home(self, request: Request) -> HTMLResponse:
        """``GET /``."""
        status = self.status()
        return HTMLResponse(
            _PAGE.format(
                version=escape(__version__),
                events=status["events"],
                processed=status["processed_seq"],
                lag=status["lag"],
                time=escape(status["time"]),
            )
        )


def home_routes(*, events: EventLog, profiles: ProfileReader, clock: Clock) -> list[Route]:
    """``/`` and ``/healthz``."""
    api = HomeEndpoints(events=events, profiles=profiles, clock=clock)
    return [
        Route("/", api.home, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
    ]


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Safar</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
dt {{ font-weight: 600; }}
code {{ background: #f3f3f3; padding: 0 .25rem; }}
</style>
</head>
<body>
<h1>Safar <small>{version}</small></h1>
<p>Safar is an open-source customer journey orchestration engine. It takes events from
Segment-compatible tracking SDKs, joins them into one profile per customer, and runs journeys
that decide what to send, when, and why not.</p>
<ul>
<li><a href="/docs">API documentation</a></li>
<li><a href="/openapi.json">OpenAPI document</a></li>
<li><a href="/healthz">Health</a></li>
</ul>
<dl>
<dt>Last event in the log</dt><dd id="events">{events}</dd>
<dt>Processed up to event</dt><dd id="processed">{processed}</dd>
<dt>Waiting to be processed</dt><dd id="lag">{lag}</dd>
<dt>Server time</dt><dd>{time}</dd>
</dl>
<p>Send events to <code>/v1/batch</code> with a source's write key; read profiles with an API key
as <code>Authorization: Bearer &lt;key&gt;</code>.</p>
</body>
</html>
"""
