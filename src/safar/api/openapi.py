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
    return {**paths, **_tracking_paths()}


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


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def openapi_document() -> dict[str, Any]:
    """Safar's OpenAPI 3.1 document, freshly built (callers may change their copy)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Safar",
            "version": __version__,
            "summary": "Customer journey orchestration: tracking, profiles, journeys.",
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
            },
            "schemas": _schemas(),
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
