"""Latency: from an event acknowledged by ``/v1/batch`` to its message reaching the channel.

A real ``safar serve`` (API process + worker process) runs a journey that sends a webhook at once
on every "Bench Ping" event. The webhook channel posts to a sink in this process (a threaded
``http.server``), which notes when each message arrives by the event's ``n``. A load generator
sends batches of events at a fixed rate over a few keep-alive connections and notes when each
batch is acknowledged. Latency per event = arrival at the sink − acknowledgement of its batch
(both ``time.perf_counter`` in this process); so it includes the worker's log polling, profile
processing, journey step, outbox, policy gate, rendering and the webhook's HTTP call itself.
The first seconds are warm-up and not counted.
"""

from __future__ import annotations

import http.client
import http.server
import os
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

    sink = _Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update(
        SAFAR_STORAGE_SYNCHRONOUS=settings.storage.synchronous,
        SAFAR_JOURNEYS_TEMPLATES_DIR=str(templates),
        SAFAR_JOURNEYS_POLICY_FILE=str(work / "policy.yaml"),
        SAFAR_CHANNELS_WEBHOOK_SECRET="bench-secret",
        SAFAR_CHANNELS_WEBHOOK_ALLOW_PRIVATE="true",
        SAFAR_CHANNELS_WEBHOOK_URL=f"http://127.0.0.1:{sink.server_address[1]}/",
    )
    proc, port = _start_server(data, env, profiles=True)
    try:
        load = _Load(port, write_key, rate, warmup + seconds)
        elapsed = load.run()
        deadline = time.perf_counter() + drain
        total = load.batches * BATCH
        while len(sink.arrived) < total and time.perf_counter() < deadline:
            time.sleep(0.1)
        rss = _peak_rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        sink.shutdown()
        sink.server_close()

    first = int(warmup / load.interval)
    latencies: list[float] = []
    missing = 0
    for k in range(first, load.batches):
        for i in range(BATCH):
            arrived = sink.arrived.get(k * BATCH + i)
            if arrived is None:
                missing += 1
            else:
                latencies.append(arrived - load.acked[k])
    latencies.sort()
    acks = sorted(load.acked[k] - load.sent[k] for k in range(first, load.batches))
    measured = load.batches - first
    return {
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
