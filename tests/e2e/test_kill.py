"""Kill -9 the server while a client is sending: every acknowledged event survives, exactly once."""

from __future__ import annotations

import http.client
import threading
import uuid
from base64 import b64encode
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from safar.clock import SystemClock
from safar.stores.bundle import open_stores
from safar.testing import wait_until
from tests.e2e.live import LiveServer

pytestmark = pytest.mark.slow


def _batch(n: int) -> tuple[list[str], bytes]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    body = {
        "batch": [
            {"type": "track", "event": "Tick", "userId": f"u{i % 7}", "messageId": m}
            for i, m in enumerate(ids)
        ]
    }
    return ids, msgspec.json.encode(body)


class Sender(threading.Thread):
    """Posts batches until the connection breaks; remembers what was acknowledged."""

    def __init__(self, port: int, write_key: str) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
        self.acked: list[str] = []
        self.bodies: list[bytes] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while True:
                ids, body = _batch(50)
                conn.request("POST", "/v1/batch", body=body, headers={"Authorization": self.auth})
                response = conn.getresponse()
                if response.read() == b'{"success":true}' and response.status == 200:
                    self.acked.extend(ids)
                    self.bodies.append(body)
        except (OSError, http.client.HTTPException):
            return  # the server died under us
        finally:
            conn.close()


def _stored_ids(server: LiveServer) -> Counter[str]:
    counts: Counter[str] = Counter()
    with open_stores(server.settings(), SystemClock()) as stores:
        after = 0
        while batch := stores.events.read(after, 10_000):
            counts.update(e.message_id for e in batch)
            after = batch[-1].seq
    return counts


def test_kill_9_while_sending_loses_nothing_acknowledged(
    tmp_path: Path, storage_env: dict[str, str]
) -> None:
    server = LiveServer(tmp_path / "data", env=storage_env).start()
    senders = [Sender(server.port, server.write_key) for _ in range(3)]
    try:
        for sender in senders:
            sender.start()
        wait_until(lambda: sum(len(s.acked) for s in senders) >= 3000, what="3000 acks")
        server.kill()
        for sender in senders:
            sender.join(30)
    finally:
        server.stop()
    acked = [m for s in senders for m in s.acked]
    assert len(acked) >= 3000

    stored = _stored_ids(server)
    missing = [m for m in acked if stored[m] != 1]
    assert missing == [], f"{len(missing)} acknowledged events missing or stored twice"

    # Clients retry after a crash: the restarted server must still recognise every messageId.
    server.start()
    try:
        for sender in senders:
            for body in sender.bodies[-5:]:
                status, reply = server.request(
                    "POST", "/v1/batch", body, {"Authorization": sender.auth}
                )
                assert (status, reply) == (200, {"success": True})
    finally:
        server.stop()
    stored_after = _stored_ids(server)
    assert all(stored_after[m] == 1 for m in acked)
    assert sum(stored_after.values()) == sum(stored.values())
