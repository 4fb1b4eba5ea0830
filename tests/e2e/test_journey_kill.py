"""Kill -9 the journey runtime at random points of a simulated run: no message is lost, none is
handed to a provider under an unknown key, a key is handed over again only after a crash
between its send and its settlement, and every journey instance ends as in an uninterrupted run.
Audiences run alongside: every customer ends in the same segments, with the same computed
trait and the same membership-change events (none lost, none twice) as in the uninterrupted
run.

The run is ``tests/e2e/journey_driver.py`` (a shop's abandoned carts over four simulated days,
on the SQLite stores). The killed run steps journeys from the log as the reference does, or, in
the second case, by a partition owner from a work feed on NATS JetStream (ADR 12): every
customer must still end as in the reference. The test runs it once uninterrupted for the
reference, then again in a fresh data directory, killed with SIGKILL a random 0.05-0.6 s after
each start-up (shorter on a machine fast enough to finish the run within MIN_KILLS such lives)
until :data:`KILLS` kills have landed mid-run, and lets that run finish. ``SAFAR_KILL_SEED``
replays a seed a failure
printed (the kill times, not the machine's speed).

A provider may be handed a key again after a crash: the dispatcher settles a claimed batch
after handing over all its messages, so a kill in between re-sends the batch's handed-over
messages under the same keys. The test checks that this is the only way a key comes again.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("journey_driver.py")
#: Kills aimed for; at least MIN_KILLS must land before the run ends on its own.
KILLS = 30
MIN_KILLS = 20
SHORTEST, LONGEST = 0.05, 0.6


class Driver:
    """One life of the driver process."""

    def __init__(self, data_dir: Path, sent_file: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(data_dir), str(sent_file)],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: str | None = None

    def wait_running(self, timeout: float = 60) -> None:
        """Wait until start-up is over (the stores are open)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line != "running\n":
            self.stop()
            raise AssertionError(f"driver did not start: {line!r} {self.stderr()}")

    def kill(self) -> bool:
        """SIGKILL it; True if it was still running (the kill landed mid-run)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        stderr = self.stderr()
        if self.proc.returncode == -signal.SIGKILL:
            return True
        assert self.proc.returncode == 0, stderr
        return False

    def finish(self, timeout: float = 120) -> None:
        """Wait for it to end by itself, successfully."""
        try:
            stderr = self.stderr(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        assert self.proc.returncode == 0, stderr

    def stop(self) -> None:
        """Clean-up after a failure: kill it if it still runs, without any check."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.stderr()

    def stderr(self, timeout: float = 30) -> str:
        """Wait for it to end (closing its pipes); what it wrote to stderr."""
        if self._stderr is None:
            self._stderr = self.proc.communicate(timeout=timeout)[1]
        return self._stderr


def run_uninterrupted(data_dir: Path, sent_file: Path, env: dict[str, str] | None = None) -> float:
    """Run the driver to the end; returns how long its work took (start-up excluded)."""
    driver = Driver(data_dir, sent_file, env)
    driver.wait_running()
    started = time.monotonic()
    driver.finish()
    return time.monotonic() - started


def sent_lines(sent_file: Path) -> list[str]:
    return sent_file.read_text(encoding="utf-8").splitlines() if sent_file.exists() else []


def load_final(data_dir: Path) -> dict[str, Any]:
    assert (data_dir / "done").exists()
    found: dict[str, Any] = json.loads((data_dir / "final.json").read_text(encoding="utf-8"))
    return found


def check_reference(keys: list[str], final: dict[str, Any]) -> None:
    """The uninterrupted run is itself sane: it hands each message over once, from every send
    step, the engine recorded exactly those as sent, nothing is left in the outbox, and every
    instance has ended, some converted, some not."""
    assert keys, "the reference run sent nothing"
    assert len(set(keys)) == len(keys), "the uninterrupted run handed a key over twice"
    assert {k.split(".")[2] for k in keys} == {"send_email", "send_sms", "send_coupon"}
    assert final["_outbox"] == {"pending": 0, "dead": 0}
    customers = [c for uid, c in final.items() if uid != "_outbox"]
    assert sorted(k for c in customers for k in c["sent"]) == sorted(keys)
    statuses = Counter(status for c in customers for _, status, _, _ in c["instances"])
    assert set(statuses) == {"converted", "exited"}, statuses
    assert statuses["converted"] > len(customers) / 10, statuses
    check_audiences(customers)


def check_audiences(customers: list[dict[str, Any]]) -> None:
    """Each customer's membership changes alternate, entry first, per segment, and end where
    their segments are; the windowed segment was entered and, by time alone, left."""
    for customer in customers:
        inside: set[str] = set()
        for name, segment in customer["changes"]:
            entering = name == "Segment Entered"
            assert entering != (segment in inside), customer["changes"]
            (inside.add if entering else inside.discard)(segment)
        assert sorted(inside) == sorted(customer["segments"])
        assert customer["carts"] >= 1
    left = Counter(s for c in customers for n, s in c["changes"] if n == "Segment Exited")
    assert left["browsing"] > len(customers) / 2, left
    assert sum("buyers" in c["segments"] for c in customers) > len(customers) / 10


def resent_suffix(segment: list[str], later: set[str]) -> list[str]:
    """The keys of one killed life that were handed over again later. They must be the last
    ones it handed over (those claimed in the batch it was killed in, before settlement):
    everything before them was settled and must never be handed over again."""
    again = [i for i, key in enumerate(segment) if key in later]
    if not again:
        return []
    first = again[0]
    assert again == list(range(first, len(segment))), (
        f"keys settled before a crash were handed over again: {segment[first:][:5]}"
    )
    return segment[first:]


@pytest.fixture(params=["log", "partitions"])
def killed_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """How the killed run steps journeys: from the log like the reference, or by a partition
    owner from a work feed on NATS (ADR 12), which must end everything the same way."""
    if request.param == "log":
        return {}
    nats = request.getfixturevalue("private_nats")
    return {"SAFAR_DRIVER_NATS": nats.url}


def test_kill_9_during_journeys_loses_and_repeats_nothing(
    tmp_path: Path, killed_env: dict[str, str]
) -> None:
    began = time.monotonic()
    ref_dir, ref_sent = tmp_path / "reference", tmp_path / "reference-sent"
    work = run_uninterrupted(ref_dir, ref_sent)
    reference = sent_lines(ref_sent)
    ref_final = load_final(ref_dir)
    check_reference(reference, ref_final)

    seed = int(os.environ.get("SAFAR_KILL_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    # A kill a random 0.05-0.6 s after start-up; on a machine that does the whole run so fast
    # that MIN_KILLS such lives could finish it, shorter, so that they cover about half of it
    # (a life spends ~0.1 s before it moves on) and KILLS about three quarters.
    longest = max(SHORTEST * 2, min(LONGEST, 2 * work / KILLS))
    data_dir, sent_file = tmp_path / "killed", tmp_path / "killed-sent"
    lives: list[int] = []  # lines in the sent file when each killed life ended
    ticks: list[int] = []  # the tick each kill interrupted
    while len(lives) < KILLS:
        driver = Driver(data_dir, sent_file, killed_env)
        try:
            driver.wait_running()
            time.sleep(rng.uniform(SHORTEST, longest))
        finally:
            landed = driver.kill()
        if not landed:
            break  # it finished on its own
        lives.append(len(sent_lines(sent_file)))
        tick_file = data_dir / "tick"
        ticks.append(int(tick_file.read_text()) if tick_file.exists() else 0)
    if not (data_dir / "done").exists():
        run_uninterrupted(data_dir, sent_file, killed_env)
    elapsed = time.monotonic() - began

    lines = sent_lines(sent_file)
    segments = [lines[a:b] for a, b in zip([0, *lives], [*lives, len(lines)], strict=True)]
    counts = Counter(lines)
    duplicates = sum(n - 1 for n in counts.values())
    repeating = 0  # kills after which some keys were handed over again
    for i, segment in enumerate(segments):
        assert len(set(segment)) == len(segment), f"life {i} handed a key over twice"
        repeating += bool(resent_suffix(segment, {k for s in segments[i + 1 :] for k in s}))
    summary = (
        f"seed {seed} (SAFAR_KILL_SEED), {len(lives)} kills within 0.05-{longest:.2f} s,"
        f" {len(lines)} hand-overs of {len(reference)} messages, {duplicates} repeated after"
        f" {repeating} of the kills, reference work {work:.1f} s, test {elapsed:.0f} s;"
        f" ticks killed: {ticks}"
    )
    print(summary)
    assert len(lives) >= MIN_KILLS, f"the run ended before {MIN_KILLS} kills: {summary}"
    unknown = sorted(set(lines) - set(reference))
    assert unknown == [], f"keys the uninterrupted run never sent: {unknown[:5]}; {summary}"
    lost = sorted(set(reference) - set(lines))
    assert lost == [], f"{len(lost)} messages lost, e.g. {lost[:5]}; {summary}"

    final = load_final(data_dir)
    differ = sorted(uid for uid in ref_final if final.get(uid) != ref_final[uid])
    assert differ == [], (
        f"{len(differ)} customers end differently, e.g. {differ[0]}: {final.get(differ[0])}"
        f" instead of {ref_final[differ[0]]}; {summary}"
    )
    assert final.keys() == ref_final.keys()
