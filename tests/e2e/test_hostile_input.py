"""Values no SDK sends, through a real server on PostgreSQL and on the embedded store: NUL
characters, lone surrogates, other odd strings, huge and tiny numbers and containers, values
thousands of characters long, in every field a customer or an API caller controls.

PostgreSQL refuses NUL in text (and lone surrogates are not UTF-8), and its unique indexes take
entries of at most 2,704 bytes. A value that reached such a column would fail its processor's
commit with a retryable error, and that processor would retry the same batch for ever: one bad
event would stop every customer's journeys. So each
request must be answered 200 or 4xx (never 5xx), and afterwards an ordinary customer's event,
appended after all of them, must still go all the way through: profile, audiences, journey,
message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from safar.testing import wait_until
from tests.e2e.live import LiveServer, last_line
from tests.services import postgres_schema_url

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = """\
id: poke
name: Answer every poke
entry: {event: Poke, reentry: always, api: true, where: "event.properties.note != 'skip'"}
policy: {category: onboarding, priority: 50}
steps:
  - id: hello
    send: {channel: email, template: welcome_1}
  - id: tag
    update: {set: {poked: true}, increment: {pokes: 1}}
  - id: chain
    emit: {event: Poked, properties: {via: journey}}
"""
SEGMENT = """\
id: pokers
name: Poked with a note
where:
  performed: Poke
  where: event.properties.note != ""
  at_least: 1
  within: 30d
"""
COMPUTED = """\
id: last_note
name: The last note of a poke
compute:
  event: Poke
  kind: last
  value: properties.note
"""
SUMMED = """\
id: notes_total
name: The sum of the notes of pokes
compute:
  event: Poke
  kind: sum
  value: properties.note
"""

#: Values as JSON text (so that a lone surrogate can be written at all).
NUL = '"a\\u0000b"'
SURROGATE = '"x\\ud800y"'
ODD = [
    NUL,
    SURROGATE,
    '"\\u202eevil"',
    '"\\ufeff"',
    '""',
    '" "',
    # Values where a string is usual: past 64 bits, near the float limits, containers.
    "123456789012345678901234567890",
    "1.7e308",
    "-5e-324",
    "[]",
    '{"a": null}',
]


#: 4,000 characters that do not compress: PostgreSQL's unique indexes take entries of at most
#: 2,704 bytes, and a compressible value would have fitted.
LONG = "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(125))


def long_events() -> list[str]:
    """Events with :data:`LONG` where an identifier or a trait name goes."""
    user = '"userId": "hostile"'
    return [
        f'{{"type": "track", "userId": "{LONG}", "event": "Poke"}}',
        f'{{"type": "alias", {user}, "previousId": "{LONG}"}}',
        f'{{"type": "identify", {user}, "traits": {{"email": "{LONG}@x.com", "crm_id": "{LONG}",'
        f' "{LONG}": 1}}, "context": {{"externalIds": [{{"id": "{LONG}", "type": "crm_id",'
        f' "collection": "users"}}]}}}}',
    ]


def hostile_events(odd: str) -> list[str]:
    """Events (JSON text) with ``odd`` in one user-controlled place each."""
    user = '"userId": "hostile"'
    return [
        f'{{"type": "track", {user}, "event": {odd}}}',
        f'{{"type": "track", {user}, "event": "Poke", "properties": {{"note": {odd}}}}}',
        f'{{"type": "track", {user}, "event": "Poke", "properties": {{{odd}: 1}}}}',
        f'{{"type": "identify", {user}, "traits": {{"first_name": {odd}, "email": {odd}}}}}',
        f'{{"type": "identify", {user}, "traits": {{{odd}: "v"}}}}',
        f'{{"type": "identify", {user}, "context": {{"traits": {{"phone": {odd}}}}}}}',
        f'{{"type": "track", {user}, "event": "Poke", "context": {{"timezone": {odd},'
        f' "locale": {odd}, "externalIds": [{{"id": {odd}, "type": "crm_id",'
        f' "collection": "users"}}]}}}}',
        f'{{"type": "page", {user}, "name": {odd}, "category": {odd}}}',
        f'{{"type": "screen", {user}, "name": {odd}}}',
        f'{{"type": "group", {user}, "groupId": {odd}, "traits": {{"name": {odd}}}}}',
        f'{{"type": "alias", {user}, "previousId": {odd}}}',
        f'{{"type": "track", "anonymousId": "anon-hostile", {user}, "event": "Poke",'
        f' "integrations": {{{odd}: true}}}}',
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    (tmp_path / "policy.yaml").write_text("quiet_hours: false\n", encoding="utf-8")
    (tmp_path / "poke.yaml").write_text(JOURNEY, encoding="utf-8")
    audiences = tmp_path / "audiences"
    audiences.mkdir()
    (audiences / "pokers.yaml").write_text(SEGMENT, encoding="utf-8")
    (audiences / "last_note.yaml").write_text(COMPUTED, encoding="utf-8")
    (audiences / "notes_total.yaml").write_text(SUMMED, encoding="utf-8")
    env = {
        "SAFAR_STORAGE_URL": postgres_schema_url() if request.param == "postgres" else "",
        "SAFAR_JOURNEYS_TEMPLATES_DIR": str(ROOT / "examples/templates"),
        "SAFAR_JOURNEYS_POLICY_FILE": str(tmp_path / "policy.yaml"),
        "SAFAR_CHANNELS_CONSOLE_FOR": "email",
        "SAFAR_CHANNELS_CONSOLE_PATH": str(tmp_path / "sent.txt"),
        "SAFAR_JOURNEYS_LINK_SECRET_FILE": str(tmp_path / "link-secret"),
    }
    live = LiveServer(tmp_path / "data", env=env)
    for command in (("journeys", tmp_path / "poke.yaml"), ("audiences", audiences)):
        done = live.cli(command[0], "publish", str(command[1]))
        assert done.returncode == 0, done.stderr
    live.start()
    try:
        yield live
    finally:
        live.stop()


def post(live: LiveServer, path: str, body: str) -> tuple[int, Any]:
    return live.request(
        "POST",
        path,
        body=body.encode(),
        headers={"Authorization": live.basic, "Content-Type": "application/json"},
    )


def test_odd_text_is_answered_and_stops_nothing(server: LiveServer, tmp_path: Path) -> None:
    for event in [event for odd in ODD for event in hostile_events(odd)] + long_events():
        status, body = post(server, "/v1/batch", f'{{"batch": [{event}]}}')
        assert status == 200 or (400 <= status < 500 and body["error"]), (event, body)

    server.wait_processed()  # the hostile customer has a profile: calls below reach the stores
    admin = last_line(server.cli("keys", "create", "--scope", "admin"))
    bearer = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
    for odd in ODD:
        # In a URL, as UTF-8 bytes (a lone surrogate as the bytes it would have).
        value = json.loads(odd)
        raw = quote(value if isinstance(value, str) else odd, safe="", errors="surrogatepass")
        for method, path, body in (
            ("GET", f"/v1/profiles/user_id:{raw}", None),
            ("GET", f"/v1/profiles/user_id:hostile/events?limit=5&cursor={raw}", None),
            ("GET", f"/v1/profiles/user_id:{raw}/consent", None),
            ("GET", f"/v1/profiles/user_id:{raw}/journeys", None),
            ("GET", f"/v1/journeys/{raw}", None),
            ("GET", f"/v1/segments/{raw}", None),
            (
                "PUT",
                "/v1/profiles/user_id:hostile/consent",
                f'{{"channel": "email", "category": {odd}, "subscribed": false}}',
            ),
            (
                "POST",
                "/v1/journeys/poke/entries",
                f'{{"profile": "user_id:hostile", "request_id": {odd},'
                f' "context": {{"note": {odd}, {odd}: 1}}}}',
            ),
        ):
            status, answer = server.request(
                method, path, body=None if body is None else body.encode(), headers=bearer
            )
            assert status < 500, (method, path, body, answer)

    # An ordinary customer after all of it: every processor got past the odd events.
    status, _ = post(
        server,
        "/v1/batch",
        '{"batch": [{"type": "identify", "userId": "canary", "traits": {"first_name": "Canary",'
        ' "email": "canary@example.com"}},'
        ' {"type": "track", "userId": "canary", "event": "Poke", "properties": {"note": "hi"}}]}',
    )
    assert status == 200
    sent = tmp_path / "sent.txt"
    wait_until(
        lambda: sent.exists() and "Canary" in sent.read_text(encoding="utf-8"),
        timeout=60,
        what="the canary's message",
    )
    server.wait_processed()
    wait_until(
        lambda: server.profile("user_id:canary")[1]["traits"].get("pokes") == 1,
        timeout=60,
        what="the journey's update of the canary",
    )
