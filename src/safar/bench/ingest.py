"""``safar bench ingest``: Segment-shaped batches over HTTP into a real ``safar serve``.

The server runs in its own process group (API process + profile processor process); this process is
the client, with several keep-alive connections on threads. In the same run it measures the floor:
the same rows inserted straight into SQLite with ``executemany``, one transaction per batch,
with the same pragmas. Numbers are reported, never asserted.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from base64 import b64encode
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from safar.config import Settings

_EVENTS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Page Viewed")


def make_batches(events: int, batch: int, users: int, seed: int = 1) -> list[list[dict[str, Any]]]:
    """Batches shaped like segment-analytics-python's: track mostly, an identify per ~20 events."""
    base = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for i in range(events):
        user = (i * 7919 + seed) % users
        stamp = datetime.fromtimestamp(base + i / 1000, tz=UTC).isoformat()
        message: dict[str, Any] = {
            "messageId": str(uuid.uuid4()),
            "timestamp": stamp,
            "userId": f"user-{user}",
            "anonymousId": f"anon-{user}",
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
            "integrations": {},
        }
        if i % 20 == 0:
            message["type"] = "identify"
            message["traits"] = {"email": f"user{user}@example.com", "plan": "pro", "logins": i}
        else:
            message["type"] = "track"
            message["event"] = _EVENTS[i % len(_EVENTS)]
            message["properties"] = {"product_id": f"p-{i % 500}", "price": 19.5, "currency": "USD"}
        current.append(message)
        if len(current) == batch:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


class _Client:
    """Sends pre-encoded bodies over one keep-alive connection per thread; records latencies."""

    def __init__(self, host: str, port: int, write_key: str) -> None:
        self.host, self.port = host, port
        self.auth = "Basic " + b64encode(f"{write_key}:".encode()).decode()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def send_all(self, bodies: list[bytes], connections: int) -> float:
        chunks = [bodies[i::connections] for i in range(connections)]
        threads = [threading.Thread(target=self._send, args=(chunk,)) for chunk in chunks]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def _send(self, bodies: list[bytes]) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        latencies: list[float] = []
        for body in bodies:
            t0 = time.perf_counter()
            conn.request("POST", "/v1/batch", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                with self._lock:
                    self.failures.append(f"{response.status} {payload[:200]!r}")
        conn.close()
        with self._lock:
            self.latencies.extend(latencies)


def _floor(path: Path, rows: list[list[tuple[Any, ...]]], synchronous: str) -> float:
    """Events/s for plain executemany of the same rows into the same table shape, no dedupe."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE events(seq INTEGER PRIMARY KEY, source_id TEXT, message_id TEXT, type TEXT,"
        " name TEXT, user_id TEXT, anonymous_id TEXT, timestamp INTEGER, received_at INTEGER,"
        " body BLOB)"
    )
    sql = (
        "INSERT INTO events(source_id, message_id, type, name, user_id, anonymous_id, timestamp,"
        " received_at, body) VALUES (?,?,?,?,?,?,?,?,?)"
    )
    started = time.perf_counter()
    for batch in rows:
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return sum(len(b) for b in rows) / elapsed


def _peak_rss_mb(pid: int) -> float:
    """Peak resident set of a process and its children (VmHWM), in MiB, from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids.extend(int(child) for child in children)
    except OSError:
        pass
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _health(host: str, port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/healthz")
    data: dict[str, Any] = msgspec.json.decode(conn.getresponse().read())
    conn.close()
    return data


def _start_server(
    data_dir: Path, env: dict[str, str], role: str
) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "safar.cli", "serve", "--port", "0", "--data-dir", str(data_dir)]
    cmd += ["--role", role]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    port = int(line.rsplit(":", 1)[1])
    return proc, port


def _start_workers(data_dir: Path, env: dict[str, str], count: int) -> list[subprocess.Popen[str]]:
    """``count`` processes of ``safar serve --role worker``, each in its own process group."""
    cmd = [sys.executable, "-m", "safar.cli", "serve", "--role", "worker"]
    return [
        subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.wait(30)


def run_ingest_bench(
    settings: Settings,
    *,
    events: int,
    batch: int,
    connections: int,
    users: int,
    profiles: bool = True,
    as_json: bool = False,
    postgres: str | None = None,
    workers: int = 0,
) -> int:
    """Run the benchmark and print its report. Returns a process exit code.

    With ``postgres``, Safar runs on a scratch schema of that database and the floor is a
    PostgreSQL bulk load; with ``workers``, the server runs ``--role api`` beside that many
    ``--role worker`` processes instead of ``--role all``."""
    if postgres is not None:
        from safar.bench.postgres import scratch_schema

        with scratch_schema(postgres, "ingest") as url:
            settings = msgspec.structs.replace(
                settings, storage=msgspec.structs.replace(settings.storage, url=url)
            )
            return _run_ingest_bench(
                settings, events, batch, connections, users, profiles, as_json, workers
            )
    return _run_ingest_bench(
        settings, events, batch, connections, users, profiles, as_json, workers
    )


def _run_ingest_bench(
    settings: Settings,
    events: int,
    batch: int,
    connections: int,
    users: int,
    profiles: bool,
    as_json: bool,
    workers: int,
) -> int:
    from safar.clock import SystemClock
    from safar.ingest.validate import event_from_json
    from safar.stores.bundle import open_stores

    work = Path(tempfile.mkdtemp(prefix="safar-bench-"))
    try:

        def say(message: str) -> None:
            if not as_json:
                print(message, file=sys.stderr, flush=True)

        say(f"generating {events:,} events in batches of {batch} ...")
        batches = make_batches(events, batch, users)
        sent_at = datetime.now(tz=UTC).isoformat()
        bodies = [msgspec.json.encode({"batch": b, "sentAt": sent_at}) for b in batches]

        data_dir = work / "data"
        bench_settings = msgspec.structs.replace(settings, data_dir=str(data_dir))
        with open_stores(bench_settings, SystemClock()) as stores:
            write_key = stores.keys.create_source("bench").write_key

        env = dict(os.environ)
        env["SAFAR_STORAGE_SYNCHRONOUS"] = settings.storage.synchronous
        env["SAFAR_STORAGE_URL"] = settings.storage.url
        role = "all" if profiles and not workers else "api"
        proc, port = _start_server(data_dir, env, role)
        worker_procs = _start_workers(data_dir, env, workers if profiles else 0)
        try:
            client = _Client("127.0.0.1", port, write_key)
            say(f"sending over {connections} connections to port {port} ...")
            started = time.perf_counter()
            # The client and the server share the machine: what each spends per event says
            # how far the server would go with the machine to itself.
            server_cpu, client_cpu = _cpu_seconds(proc.pid), time.process_time()
            elapsed = client.send_all(bodies, connections)
            server_cpu = _cpu_seconds(proc.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            rss_ingest = _peak_rss_mb(proc.pid)
            health = _health("127.0.0.1", port)
            while profiles and health["processed_seq"] < health["events"]:
                time.sleep(0.05)
                health = _health("127.0.0.1", port)
            profiles_done = time.perf_counter() - started
            rss = _peak_rss_mb(proc.pid)
        finally:
            _stop([proc, *worker_procs])

        received = int(time.time() * 1000)
        validated = [
            [
                event_from_json(
                    msgspec.json.encode(m),
                    source_id="src",
                    received_at=received,
                    sent_at=None,
                    default_type=None,
                    location="bench",
                    limits=settings.ingest,
                )
                for m in b
            ]
            for b in batches
        ]
        if settings.storage.url:
            from safar.bench.postgres import postgres_floor

            say("measuring the floor: the same events by COPY into PostgreSQL ...")
            floor = postgres_floor(settings.storage.url, validated)
        else:
            say("measuring the floor: the same rows by executemany into SQLite ...")
            # Every column of the event log but the seq it assigns (the last field).
            rows = [[msgspec.structs.astuple(e)[:-1] for e in b] for b in validated]
            floor = _floor(work / "floor.db", rows, settings.storage.synchronous.upper())

        latencies = sorted(client.latencies)
        accepted = sum(len(b) for b in batches) - batch * len(client.failures)
        result = {
            "events": events,
            "batch": batch,
            "connections": connections,
            "failures": len(client.failures),
            "accepted_events_per_s": round(accepted / elapsed),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "server_cpu_us_per_event": round(server_cpu / events * 1e6, 2),
            "client_cpu_us_per_event": round(client_cpu / events * 1e6, 2),
            "peak_rss_mb_ingest": round(rss_ingest, 1),
            "peak_rss_mb": round(rss, 1),
            "profiles_current_s": round(profiles_done, 2),
            "end_to_end_events_per_s": round(events / profiles_done),
            "floor_events_per_s": round(floor),
            "ratio_to_floor": round(accepted / elapsed / floor, 3),
            "store": "postgresql" if settings.storage.url else "sqlite",
            "workers": workers if profiles and workers else ("all" if profiles else 0),
            "synchronous": settings.storage.synchronous,
        }
        if as_json:
            print(msgspec.json.encode(result).decode())
        else:
            width = max(len(k) for k in result)
            for key, value in result.items():
                print(f"{key:<{width}}  {value}")
            for failure in client.failures[:5]:
                print(f"failure: {failure}")
        return 0 if not client.failures else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
