"""Processes for the multi-worker end-to-end tests: an API, ``--role worker`` processes and the
sign-ups they handle (one journey: a pause, then one email)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import msgspec

from safar.clock import SystemClock
from safar.runtime.partitions import PARTITION_PREFIX
from safar.stores.bundle import Stores, open_stores
from safar.testing import wait_until
from tests.e2e.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = """\
id: hello
name: Hello after a pause
entry: {event: Signed Up, reentry: never}
policy: {category: onboarding, priority: 70}
steps:
  - id: pause
    wait: {for: 1s}
  - id: hello
    send: {channel: email, template: welcome_1}
"""
SERVE_WORKER = [sys.executable, "-m", "safar.cli", "serve", "--role", "worker"]


class Worker:
    """One ``safar serve --role worker`` process group, printing its emails to its own file."""

    def __init__(self, data_dir: Path, env: dict[str, str], outbox: Path) -> None:
        self.outbox = outbox
        self.proc = subprocess.Popen(
            [*SERVE_WORKER, "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            env={**os.environ, **env, "SAFAR_CHANNELS_CONSOLE_PATH": str(outbox)},
            start_new_session=True,
        )

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in path.read_text().split()} if path.exists() else set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            # A child a failed test left paused would hold a SIGTERM pending for ever.
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)


@contextmanager
def installation(
    tmp_path: Path, env: dict[str, str]
) -> Iterator[tuple[LiveServer, list[Worker], Stores]]:
    """An API process and two worker processes sharing one installation (``env`` selects the
    store, the work feed and the lease length), and its stores opened in the test."""
    (tmp_path / "policy.yaml").write_text("quiet_hours: false\n", encoding="utf-8")
    journey = tmp_path / "hello.yaml"
    journey.write_text(JOURNEY, encoding="utf-8")
    env = {
        **env,
        "SAFAR_JOURNEYS_TEMPLATES_DIR": str(ROOT / "examples/templates"),
        "SAFAR_JOURNEYS_POLICY_FILE": str(tmp_path / "policy.yaml"),
        "SAFAR_CHANNELS_CONSOLE_FOR": "email",
        "SAFAR_JOURNEYS_LINK_SECRET_FILE": str(tmp_path / "link-secret"),
    }
    api = LiveServer(tmp_path / "data", env=env)
    published = api.cli("journeys", "publish", str(journey))
    assert published.returncode == 0, published.stderr
    api.start(role="api")
    workers = [Worker(api.data_dir, env, tmp_path / f"sent-{n}.txt") for n in (1, 2)]
    stores = open_stores(api.settings(), SystemClock())
    try:
        yield api, workers, stores
    finally:
        try:
            for worker in workers:
                worker.stop()
        finally:
            api.stop()
            stores.close()


def sign_up(api: LiveServer, first: int, count: int) -> list[str]:
    """Customers ``first`` … sign up; the message ids acknowledged."""
    acked: list[str] = []
    for n in range(first, first + count):
        status, _ = api.request(*_sign_up_request(api, n))
        if status == 200:
            acked += [f"i{n}", f"s{n}"]
    return acked


def sign_up_retrying(api: LiveServer, first: int, count: int, timeout: float = 60) -> list[str]:
    """Customers ``first`` … sign up, each batch sent again (the same message ids) until it is
    acknowledged, as Segment's SDKs do when the server is out of reach or answers 429 or 5xx;
    the message ids acknowledged: all of them. Any other answer fails the test."""

    def acknowledged(n: int) -> bool:
        try:
            status, body = api.request(*_sign_up_request(api, n))
        except (OSError, http.client.HTTPException):
            return False  # no answer: the batch may or may not be stored; send it again
        assert status == 200 or status == 429 or status >= 500, (status, body)
        return status == 200

    acked: list[str] = []
    for n in range(first, first + count):
        wait_until(partial(acknowledged, n), timeout=timeout, interval=0.1, what=f"c{n} acked")
        acked += [f"i{n}", f"s{n}"]
    return acked


def _sign_up_request(api: LiveServer, n: int) -> tuple[str, str, bytes, dict[str, str]]:
    batch = [
        {
            "type": "identify",
            "userId": f"c{n}",
            "messageId": f"i{n}",
            "traits": {"email": f"c{n}@example.com", "first_name": f"C{n}"},
        },
        {"type": "track", "userId": f"c{n}", "event": "Signed Up", "messageId": f"s{n}"},
    ]
    body = msgspec.json.encode({"batch": batch})
    return "POST", "/v1/batch", body, {"Authorization": api.basic}


def partition_owners(stores: Stores) -> dict[int, str]:
    """Partition -> the process holding its lease now."""
    holders = stores.leases.holders(SystemClock().now_ms())
    return {
        int(name[len(PARTITION_PREFIX) :]): owner
        for name, owner in holders.items()
        if name.startswith(PARTITION_PREFIX)
    }


def shared_partitions(stores: Stores, partitions: int, workers: list[Worker]) -> dict[int, str]:
    """Wait until two workers hold all ``partitions`` between them and the first messages went
    out; returns who holds which."""
    shared: dict[int, str] = wait_until(
        lambda: (
            len(owners := partition_owners(stores)) == partitions
            and len(set(owners.values())) == 2
            and owners
        ),
        timeout=60,
        what="both workers own partitions",
    )
    wait_until(lambda: len(sent_keys(workers)) >= 5, timeout=60, what="the first messages")
    return shared


def sent_keys(workers: list[Worker]) -> Counter[str]:
    keys: Counter[str] = Counter()
    for worker in workers:
        if worker.outbox.exists():
            for line in worker.outbox.read_text(encoding="utf-8").splitlines():
                keys.update(part[4:] for part in line.split() if part.startswith("key="))
    return keys


def assert_every_customer_done(
    workers: list[Worker], stores: Stores, acked: list[str], customers: int
) -> None:
    """Waits for every customer's email, then checks that no acknowledged event was lost or
    doubled, that every message went out exactly once, and that every customer went the same
    way through the journey, whatever fault their batch met."""
    from safar.testing import wait_until

    wait_until(lambda: len(sent_keys(workers)) >= customers, timeout=120, what="every email")
    stored: Counter[str] = Counter()
    after = 0
    while page := stores.events.read(after, 1000):
        stored.update(e.message_id for e in page)
        after = page[-1].seq
    assert all(stored[m] == 1 for m in acked), "an acknowledged event is missing or doubled"
    sent = sent_keys(workers)
    assert len(sent) == customers and set(sent.values()) == {1}, "a message went out twice"
    paths = set()
    for n in range(customers):
        profile = stores.profiles.find(("user_id", f"c{n}"))
        assert profile is not None
        instances, visits = stores.runs.history(profile.id, 10)
        assert [i.status for i in instances] == ["exited"]
        paths.add(tuple((v.step, v.outcome) for v in visits))
    assert len(paths) == 1, paths
