"""Latency: from an event acknowledged by ``/v1/batch`` to its message handed to the channel.

A real ``safar serve`` (API process + worker process) runs a journey that sends a ``webhook``
message at once on every "Bench Ping" event, rendered from a template that carries the event's
``n``. Where the message goes (``sink``):

- ``console``: ``channels.console_for = ["webhook"]`` makes the channel append one line per
  message to a file, which a thread here tails (polling every 0.5 ms): the moment the engine
  hands the message to a channel that does next to nothing;
- ``webhook``: the real webhook channel, a signed HTTP POST per message from the dispatcher to a
  threaded ``http.server`` here: the above plus one HTTP round trip per message.

A load generator sends batches of events at a fixed rate over a few keep-alive connections and
notes when each batch is acknowledged. Latency per event = arrival at the sink − acknowledgement
of its batch (both ``time.perf_counter`` in this process); it includes the worker's log polling,
profile processing, journey step, outbox, policy gate and rendering. The first seconds are
warm-up and not counted.
"""

from __future__ import annotations

import http.client
import http.server
import os
import re
import signal
import threading
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import msgspec

from safar.config import Settings

JOURNEY = """\
id: bench-ping
name: Bench ping
entry:
  event: Bench Ping
  reentry: always
  max_active: 1000000
steps:
  - id: ping
    send: {channel: webhook, template: bench_ping}
"""
TEMPLATE = """\
id: bench_ping
channel: webhook
locales:
  en:
    data:
      n: "{{ event.properties.n }}"
"""
USERS = 1_000
BATCH = 25
CONNECTIONS = 4


class _Sink(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.arrived: dict[int, float] = {}


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the webhook client expects
    # The answer goes out in writes of its own: without this, Nagle's algorithm and the
    # client's delayed ACK hold each response ~40 ms.
    disable_nagle_algorithm = True
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        at = time.perf_counter()
        n = int(msgspec.json.decode(body)["n"])
        self.server.arrived.setdefault(n, at)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Tail:
    """Follows the console channel's file, noting when each message's line appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrived: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        self.path.touch()
        with self.path.open("rb") as file:
            pending = b""
            while not self._stop.is_set():
                chunk = file.read(1 << 20)
                if not chunk:
                    time.sleep(0.0005)
                    continue
                at = time.perf_counter()
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    found = _N.search(line)
                    if found:
                        self.arrived.setdefault(int(found.group(1)), at)


_N = re.compile(rb'data=\{"n":"(\d+)"\}')


class _Load:
    """Sends batch ``k`` at ``start + k × interval`` on connection ``k mod connections``."""

    def __init__(self, port: int, write_key: str, rate: float, seconds: float) -> None:
        self.port = port
        self.auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
        self.interval = BATCH / rate
        self.batches = int(seconds / self.interval)
        self.acked: list[float] = [0.0] * self.batches
        self.sent: list[float] = [0.0] * self.batches
        self.failures = 0

    def body(self, k: int) -> bytes:
        batch = [
            {
                "type": "track",
                "event": "Bench Ping",
                "userId": f"ping-{(k * BATCH + i) % USERS}",
                "messageId": f"ping-{k * BATCH + i}",
                "properties": {"n": k * BATCH + i},
            }
            for i in range(BATCH)
        ]
        return msgspec.json.encode({"batch": batch})

    def run(self) -> float:
        start = time.perf_counter() + 0.05
        threads = [
            threading.Thread(target=self._send, args=(c, start), daemon=True)
            for c in range(CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    def _send(self, connection: int, start: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        for k in range(connection, self.batches, CONNECTIONS):
            body = self.body(k)
            delay = start + k * self.interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.sent[k] = time.perf_counter()
            conn.request("POST", "/v1/batch", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            self.acked[k] = time.perf_counter()
            if response.status != 200:
                self.failures += 1
        conn.close()


def run_latency(
    settings: Settings,
    work: Path,
    *,
    seconds: float,
    rate: float = 5_000.0,
    sink: str = "console",
    warmup: float = 3.0,
    drain: float = 30.0,
) -> dict[str, Any]:
    """Run the load for ``warmup + seconds`` against a fresh ``safar serve`` in ``work``."""
    from safar.bench.ingest import _peak_rss_mb, _start_server
    from safar.clock import SystemClock
    from safar.definitions import parse_journey
    from safar.runtime.catalog import publish
    from safar.stores.bundle import open_stores

    data, templates = work / "data", work / "templates"
    templates.mkdir(parents=True)
    (templates / "bench_ping.yaml").write_text(TEMPLATE, encoding="utf-8")
    (work / "policy.yaml").write_text("quiet_hours: false\n", encoding="utf-8")
    clock = SystemClock()
    bench = msgspec.structs.replace(settings, data_dir=str(data))
    with open_stores(bench, clock) as stores:
        write_key = stores.keys.create_source("bench").write_key
        publish(stores.journeys, parse_journey(JOURNEY, "bench-ping.yaml"), clock.now_ms())

    env = dict(os.environ)
    if settings.storage.url:
        env["SAFAR_STORAGE_URL"] = settings.storage.url
    if settings.bus.url:
        env.update(
            SAFAR_BUS_URL=settings.bus.url,
            SAFAR_BUS_STREAM=settings.bus.stream,
            SAFAR_BUS_SUBJECT=settings.bus.subject,
        )
    env.update(
        SAFAR_STORAGE_SYNCHRONOUS=settings.storage.synchronous,
        SAFAR_JOURNEYS_TEMPLATES_DIR=str(templates),
        SAFAR_JOURNEYS_POLICY_FILE=str(work / "policy.yaml"),
    )
    server: _Sink | None = None
    tail: _Tail | None = None
    if sink == "webhook":
        server = _Sink()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        arrived = server.arrived
        env.update(
            SAFAR_CHANNELS_WEBHOOK_SECRET="bench-secret",
            SAFAR_CHANNELS_WEBHOOK_ALLOW_PRIVATE="true",
            SAFAR_CHANNELS_WEBHOOK_URL=f"http://127.0.0.1:{server.server_address[1]}/",
        )
    else:
        tail = _Tail(work / "messages.txt")
        arrived = tail.arrived
        env.update(
            SAFAR_CHANNELS_CONSOLE_FOR='["webhook"]',
            SAFAR_CHANNELS_CONSOLE_PATH=str(tail.path),
        )
    try:
        proc, port = _start_server(data, env, "all")
        try:
            load = _Load(port, write_key, rate, warmup + seconds)
            elapsed = load.run()
            deadline = time.perf_counter() + drain
            total = load.batches * BATCH
            while len(arrived) < total and time.perf_counter() < deadline:
                time.sleep(0.1)
            rss = _peak_rss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if tail is not None:
            tail.close()

    first = int(warmup / load.interval)
    latencies: list[float] = []
    missing = 0
    for k in range(first, load.batches):
        for i in range(BATCH):
            at = arrived.get(k * BATCH + i)
            if at is None:
                missing += 1
            else:
                latencies.append(at - load.acked[k])
    latencies.sort()
    acks = sorted(load.acked[k] - load.sent[k] for k in range(first, load.batches))
    measured = load.batches - first
    return {
        "sink": sink,
        "rate_target": rate,
        "rate_achieved": round(load.batches * BATCH / elapsed),
        "events_measured": measured * BATCH,
        "delivered": len(latencies),
        "missing": missing,
        "request_failures": load.failures,
        "p50_ms": _ms(latencies, 0.5),
        "p99_ms": _ms(latencies, 0.99),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "ack_p50_ms": _ms(acks, 0.5),
        "ack_p99_ms": _ms(acks, 0.99),
        "peak_rss_mb": round(rss, 1),
    }


def _ms(values: list[float], share: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * share))] * 1000, 1)
