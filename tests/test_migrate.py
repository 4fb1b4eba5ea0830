"""``safar migrate --to postgresql://…``: an embedded installation moved into PostgreSQL reads
the same through every port, keeps working there, and a migration that cannot be done or
verified leaves the target without data.

The installation is the demo shop (profiles, identities, timelines, segments, computed traits,
published journeys) with, on top, what the demo does not make: a merge, journeys entered with
timers waiting, messages sent, a dead letter and a retry pending, consent, inbox items, a
schedule tick, a membership event not yet forwarded, and an API key, so that every state table
holds rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from safar.cli import main
from safar.clock import SystemClock
from safar.config import IngestSettings, Settings, load_settings
from safar.demo.seed import seed_demo
from safar.errors import DeliveryError
from safar.ingest.validate import event_from_json
from safar.model.audiences import Fold, Membership
from safar.model.events import AppendResult, Event
from safar.model.messages import Consent, InboxItem, Receipt, RenderedMessage
from safar.model.profiles import Profile
from safar.model.runs import EntryRecord, Instance
from safar.ports import AudienceUpdate, Channel, JourneyUpdate
from safar.runtime.internal import internal_event
from safar.runtime.worker import Worker
from safar.stores import migrate
from safar.stores.bundle import Stores, open_stores
from safar.stores.migrate import MigrationError, migrate_to_postgres
from safar.testing import FakeClock
from safar.testing.journeys import RecordingChannel
from tests.services import postgres_schema_url

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3_600_000
#: The customers who sign up on top of the demo, each entering the welcome journey (a timer two
#: days out) and the abandoned cart journey (a timer an hour out).
NEW = [f"new-{i}" for i in range(4)]
#: An address the email provider refuses for good (a dead letter), and one it refuses for now
#: until after the move (a retry pending).
BOUNCE, RETRY = "bounce", "retry"
#: A membership event committed but not yet forwarded into the event log.
EMIT_ID = "emit-before-move"
MESSAGE_IDS = itertools.count()


@dataclass
class Email:
    """An email provider that refuses ``bounce@`` for good, and ``retry@`` while ``refusing``."""

    name: str = "email"
    refusing: bool = True
    inner: RecordingChannel = field(default_factory=lambda: RecordingChannel("email"))

    def send(self, message: RenderedMessage) -> Receipt:
        if message.to.startswith(f"{BOUNCE}@"):
            raise DeliveryError("no such mailbox (test)", retryable=False)
        if message.to.startswith(f"{RETRY}@") and self.refusing:
            raise DeliveryError("mailbox full (test)", retryable=True)
        return self.inner.send(message)


@dataclass(frozen=True)
class Installation:
    """The embedded installation every test migrates (never changed after it is built)."""

    settings: Settings
    now: int
    #: The secret of an API key made before the move.
    api_secret: str

    def clock(self) -> FakeClock:
        return FakeClock(self.now)

    def target(self, url: str) -> Settings:
        settings = settings_in(self.settings.data_dir, self.settings.journeys.policy_file)
        settings.storage.url = url
        return settings


def settings_in(data_dir: str | Path, policy_file: str) -> Settings:
    settings = load_settings(data_dir=data_dir, environ={})
    settings.journeys.templates_dir = str(ROOT / "examples/templates")
    settings.journeys.policy_file = policy_file  # no quiet hours: sends go at once
    return settings


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    root = tmp_path_factory.mktemp("embedded")
    policy = root / "policy.yaml"
    policy.write_text("quiet_hours: false\n", encoding="utf-8")
    settings = settings_in(root / "data", str(policy))
    seed_demo(settings, customers=200)
    clock = FakeClock(SystemClock().now_ms())
    with open_stores(settings, clock) as stores:
        _, secret = stores.keys.create_api_key("made before the move", "read")
        _customers_arrive(stores, settings, clock)
        _fill_what_journeys_do_not(stores, clock)
    return Installation(settings, clock.now_ms(), secret)


def _customers_arrive(stores: Stores, settings: Settings, clock: FakeClock) -> None:
    """A merge; sign-ups entering journeys, with a dead letter and a retry among their sends."""
    worker = Worker(stores, settings, clock, channels=channels(Email()))
    # Seen anonymously, then signed in: two profiles, merged by the third event.
    send(stores, clock, {"type": "track", "anonymousId": "anon-m", "event": "Page Viewed"})
    drain(worker)
    send(stores, clock, identify("merge-u"))
    drain(worker)
    send(stores, clock, {"type": "identify", "userId": "merge-u", "anonymousId": "anon-m"})
    for user in NEW:
        send(stores, clock, identify(user), sign_up(user), added_to_cart(user))
    send(stores, clock, identify(BOUNCE), sign_up(BOUNCE), identify(RETRY), sign_up(RETRY))
    drain(worker)


def _fill_what_journeys_do_not(stores: Stores, clock: FakeClock) -> None:
    """Consent, inbox items, a schedule tick, a membership event waiting to be forwarded, a
    repair request waiting for the audience processor, and what partitioned stepping leaves
    (ADR 12): a partition's cursor, instances handed over."""
    now = clock.now_ms()
    profile = stores.profiles.find(("user_id", NEW[1]))
    assert profile is not None
    stores.delivery.set_consent(
        Consent(profile_id=profile.id, channel="sms", category="*", subscribed=False, at=now)
    )
    stores.delivery.set_consent(
        Consent(profile_id=profile.id, channel="email", category="news", subscribed=True, at=now)
    )
    for n in range(2):
        item = InboxItem(id=f"inbox-{n}", profile_id=profile.id, created_at=now, subject="Hi")
        stores.delivery.add_inbox(item)
    assert stores.delivery.mark_inbox(profile.id, "inbox-0", "read", now)
    stores.runs.commit(JourneyUpdate(schedule_ticks={"winback": now - HOUR}))
    last = stores.events.last_seq()
    handover = JourneyUpdate(after_seq=0, processed_seq=last, partition=0, moves={profile.id: 3})
    stores.runs.commit(handover)
    emit = internal_event(
        key=EMIT_ID,
        type="track",
        identifier=("user_id", NEW[1]),
        timestamp=now,
        received_at=now,
        name="Segment Entered",
        properties={"segment": "repeat-buyers"},
    )
    stores.audiences.commit(AudienceUpdate(emits=[emit]))
    # A partition's audience cursor, a membership filed under it, history folds.
    filed = Membership(profile_id=profile.id, identifier=("user_id", NEW[1]), segments={"vip": now})
    stores.audiences.commit(
        AudienceUpdate(
            after_seq=0,
            processed_seq=last,
            partition=2,
            memberships=[filed],
            history={("user_id", NEW[1]): {"orders@0/h": Fold(n=1, total=25)}},
        )
    )
    stores.audience_catalog.request_repair("repeat-buyers")


def channels(email: Email) -> dict[str, Channel]:
    return {"email": email, "sms": RecordingChannel("sms")}


def identify(user: str) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": {"email": f"{user}@shop.example"}}


def sign_up(user: str) -> dict[str, Any]:
    """The same ``messageId`` every time for one user: a retry, when sent again."""
    return {"type": "track", "userId": user, "event": "Signed Up", "messageId": f"signup-{user}"}


def added_to_cart(user: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Product Added", "properties": {"price": 25}}


def send(stores: Stores, clock: FakeClock, *raws: dict[str, Any]) -> AppendResult:
    """Append Segment events as the API would (messageId made up when absent)."""
    source = stores.keys.list_sources()[0]
    events = []
    for index, raw in enumerate(raws):
        raw = {"messageId": f"m-{next(MESSAGE_IDS)}", **raw}
        events.append(
            event_from_json(
                raw,
                source_id=source.id,
                received_at=clock.now_ms(),
                sent_at=None,
                default_type=None,
                location=f"test event {index}",
                limits=IngestSettings(),
            )
        )
        clock.advance(ms=1)
    return stores.events.append(events)


def drain(worker: Worker) -> None:
    """Step and deliver until nothing is left to do now (any error fails the test)."""
    for _ in range(1_000):
        if worker.step_once() + worker.dispatcher.run_once() == 0:
            return
    raise AssertionError("the worker never became idle")


# -- what the ports return ---------------------------------------------------------------------


def observe(stores: Stores, secret: str) -> dict[str, Any]:
    """Everything the ports return about the installation, for comparing two of them."""
    profiles = _all_profiles(stores)
    seen: dict[str, Any] = {"profiles": profiles}
    seen |= _identities(stores, profiles)
    seen |= _journeys(stores, [p.id for p in profiles])
    seen |= _delivery(stores, [p.id for p in profiles])
    seen |= _audiences(stores, profiles)
    seen |= _keys(stores, secret)
    seen |= _events(stores)
    return seen


def _all_profiles(stores: Stores) -> list[Profile]:
    found: list[Profile] = []
    while page := stores.profiles.scan(found[-1].id if found else "", 50):
        found += page
    return found


def _identifiers(profiles: list[Profile]) -> list[tuple[str, str]]:
    return [(kind, v) for prof in profiles for kind, vs in prof.identifiers.items() for v in vs]


def _identities(stores: Stores, profiles: list[Profile]) -> dict[str, Any]:
    p = stores.profiles
    identifiers = _identifiers(profiles)
    placed = p.load(identifiers, [])
    clusters = {placement.cluster_id for placement in placed.placements.values()}
    loaded = p.load_clusters(clusters, [prof.id for prof in profiles])
    for cluster in loaded.clusters.values():
        cluster.edges.sort(key=lambda e: e.key)  # in no particular order (the core sorts them)
    return {
        "placed": placed,
        "clusters": loaded,
        "trait_writes": sorted(
            p.trait_writes(identifiers), key=lambda w: (w.identifier, w.seq, w.key)
        ),
        "processed": p.processed_seq(),
        # One find per profile; find_many covers every identifier.
        "found": [p.find(_some_identifier(prof)) for prof in profiles],
        "found_many": p.find_many(identifiers),
        "timelines": {prof.id: p.timeline(prof.id, 1_000) for prof in profiles},
        "timeline_pages": {prof.id: p.timeline(prof.id, 2, before_seq=10**9) for prof in profiles},
        "traits": {prof.id: p.trait_history(prof.id, 1_000) for prof in profiles},
        "merges": {prof.id: p.merges(prof.id) for prof in profiles},
        "reshaped": p.reshaped(0, p.processed_seq()),
    }


def _some_identifier(profile: Profile) -> tuple[str, str]:
    kind = min(profile.identifiers)
    return kind, profile.identifiers[kind][-1]


def _journeys(stores: Stores, profile_ids: list[str]) -> dict[str, Any]:
    runs, outbox = stores.runs, stores.outbox
    history = {pid: runs.history(pid, 100) for pid in profile_ids}
    instance_ids = [i.id for instances, _ in history.values() for i in instances]
    return {
        "journeys": stores.journeys.all(),
        "journey_versions": {
            j.journey_id: stores.journeys.versions(j.journey_id) for j in stores.journeys.all()
        },
        "journey_latest": {
            j.journey_id: stores.journeys.get(j.journey_id) for j in stores.journeys.all()
        },
        "runs_processed": runs.processed_seq(),
        "partition_cursors": [runs.processed_seq(partition) for partition in (0, 3)],
        "loaded": _unordered(runs.load(profile_ids)),
        "loaded_in_3": _unordered(runs.load(profile_ids, 3)),
        "history": history,
        "instances": runs.instances(instance_ids),
        "next_wake": runs.next_wake(),
        "ticks": runs.schedule_ticks(),
        "pending": outbox.pending(),
        "next_due": outbox.next_due(),
        "dead": outbox.dead(100),
    }


def _unordered(
    loaded: tuple[list[Instance], list[EntryRecord]],
) -> tuple[list[Instance], list[EntryRecord]]:
    """What :meth:`RunStore.load` returns, in an order of its own (the port promises none)."""
    instances, entries = loaded
    by_key = sorted(entries, key=lambda e: (e.journey_id, e.profile_id))
    return sorted(instances, key=lambda i: i.id), by_key


def _delivery(stores: Stores, profile_ids: list[str]) -> dict[str, Any]:
    d = stores.delivery
    return {
        "sends": d.sends(profile_ids, 0),
        "decisions": {pid: d.decisions(pid, 100) for pid in profile_ids},
        "consents": d.consents(profile_ids),
        "inbox": {pid: d.inbox(pid, include_dismissed=True) for pid in profile_ids},
    }


def _audiences(stores: Stores, profiles: list[Profile]) -> dict[str, Any]:
    a, catalog = stores.audiences, stores.audience_catalog
    segments = [v.id for v in catalog.all() if v.kind == "segment"]
    return {
        "catalog": catalog.all(),
        "audience_versions": {v.id: catalog.versions(v.id) for v in catalog.all()},
        "latest": {v.id: catalog.get(v.id) for v in catalog.all()},
        "repairs": catalog.repairs(),
        "audiences_processed": a.processed_seq(),
        "members": {s: a.members(s, "", 10_000) for s in segments},
        "counts": {s: a.count(s) for s in segments},
        "memberships": a.memberships([p.id for p in profiles]),
        "folds": a.folds(_identifiers(profiles)),
        "audience_wake": a.next_wake(),
        "emits": a.pending_emits(100),
        "progress": a.progress(),
    }


def _keys(stores: Stores, secret: str) -> dict[str, Any]:
    sources = stores.keys.list_sources()
    return {
        "sources": sources,
        "by_write_key": [stores.keys.source_by_write_key(s.write_key) for s in sources],
        "api_key": stores.keys.api_key_by_secret(secret),
    }


def _events(stores: Stores) -> dict[str, Any]:
    log = stores.events
    events: list[Event] = []
    while page := log.read(events[-1].seq if events else 0, 2_000):
        events += page
    return {
        "events": events,
        "got": log.get([1, 7, log.last_seq(), log.last_seq() + 1]),
        "last_seq": log.last_seq(),
        "count": log.count(),
    }


def _holds_something_of_everything(seen: dict[str, Any]) -> None:
    """What the comparison covers is not empty (an empty list compares equal to anything)."""
    assert seen["api_key"] is not None and seen["dead"] and seen["emits"]
    assert seen["pending"] == 1 and seen["next_due"] and seen["next_wake"]
    assert seen["ticks"] and seen["consents"] and seen["sends"] and seen["loaded"][1]
    assert seen["partition_cursors"][0] and seen["loaded_in_3"][0]
    for per_profile in ("merges", "inbox", "decisions", "history", "traits", "timelines"):
        assert any(seen[per_profile].values()), per_profile
    assert any(seen["members"].values()) and seen["progress"] and seen["folds"]
    assert seen["repairs"]


def state_tables(settings: Settings) -> dict[str, int]:
    """Row count of every table of the embedded state database."""
    with sqlite3.connect(settings.database_path) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def holds_no_data(installation: Installation, url: str) -> bool:
    with open_stores(installation.target(url), installation.clock()) as stores:
        return (
            stores.events.count() == 0
            and stores.events.last_seq() == 0
            and stores.profiles.scan("", 1) == []
            and stores.profiles.processed_seq() == 0
            and stores.keys.list_sources() == []
            and stores.journeys.all() == []
            and stores.outbox.pending() == 0
        )


# -- the tests ---------------------------------------------------------------------------------


def test_the_installation_fills_every_state_table(installation: Installation) -> None:
    counts = state_tables(installation.settings)
    assert [name for name, rows in counts.items() if rows == 0] == ["leases"]


@pytest.mark.postgres
def test_the_command_copies_everything_and_the_ports_agree(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_schema_url()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "safar.cli",
            "migrate",
            "--data-dir",
            installation.settings.data_dir,
            "--to",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SAFAR_")},
        cwd=Path(installation.settings.data_dir).parent,
    )
    assert result.returncode == 0, result.stderr
    assert "profile_merges: 1 rows copied" in result.stdout
    assert "Verified " in result.stdout and "Start Safar with storage.url" in result.stdout
    clock = installation.clock()
    with open_stores(installation.settings, clock) as sqlite:
        before = observe(sqlite, installation.api_secret)
    with open_stores(installation.target(url), clock) as postgres:
        after = observe(postgres, installation.api_secret)
    _holds_something_of_everything(after)
    assert [key for key in before if after[key] != before[key]] == []

    # Migrating again into the same database is refused, and changes nothing there.
    assert main(["migrate", "--data-dir", installation.settings.data_dir, "--to", url]) == 2
    refusal = capsys.readouterr().err
    assert "already holds data (in api_keys, audience_emits, audience_folds and " in refusal
    assert refusal.endswith("migrate into an empty database or schema\n")
    with open_stores(installation.target(url), clock) as postgres:
        assert observe(postgres, installation.api_secret) == after


@pytest.mark.postgres
def test_processing_continues_on_postgresql(installation: Installation) -> None:
    url = postgres_schema_url()
    clock = installation.clock()
    migrate_to_postgres(installation.settings, url, clock, report=lambda _: None)
    email = Email(refusing=False)
    with open_stores(installation.target(url), clock) as stores:
        worker = Worker(stores, installation.target(url), clock, channels=channels(email))
        before = observe(stores, installation.api_secret)
        again = send(stores, clock, sign_up(NEW[0]))
        assert (again.appended, again.duplicates) == (0, 1)
        # A new customer, seen anonymously first, signs up and signs in.
        send(stores, clock, {"type": "track", "anonymousId": "anon-after", "event": "Page Viewed"})
        drain(worker)
        send(stores, clock, identify("after"), sign_up("after"))
        drain(worker)
        send(stores, clock, {"type": "identify", "userId": "after", "anonymousId": "anon-after"})
        drain(worker)
        for _ in range(2):  # the timers copied come due: two days, then ten in the morning
            clock.advance(days=2)
            drain(worker)
        after = observe(stores, installation.api_secret)
    _processed_everything(after)
    _nothing_twice(before, after, email)
    _new_rows_follow_the_copied(before, after)


def _processed_everything(after: dict[str, Any]) -> None:
    last = after["last_seq"]
    assert after["processed"] == after["runs_processed"] == after["audiences_processed"] == last
    # The retry pending and the membership event waiting before the move went out after it.
    assert after["pending"] == 0 and after["emits"] == []
    assert any(d.outcome == "sent" for d in after["decisions"][_profile(after, RETRY).id])
    assert EMIT_ID in {event.message_id for event in after["events"]}
    assert _profile(after, "after").identifiers["anonymous_id"] == ["anon-after"]
    for user in [*NEW, "after"]:
        profile = _profile(after, user)
        (welcome,) = [i for i in after["history"][profile.id][0] if i.journey_id == "welcome"]
        assert (welcome.status, welcome.exit_reason) == ("exited", "completed"), user
        tours = [d for d in after["decisions"][profile.id] if d.step_id == "tour"]
        assert [d.outcome for d in tours] == ["sent"], user


def _profile(seen: dict[str, Any], user_id: str) -> Profile:
    profiles: list[Profile] = seen["profiles"]
    (profile,) = [p for p in profiles if p.identifiers.get("user_id") == [user_id]]
    return profile


def _nothing_twice(before: dict[str, Any], after: dict[str, Any], email: Email) -> None:
    keys = [send.message_key for send in after["sends"]]
    assert len(keys) == len(set(keys))
    delivered = [message.key for message in email.inner.sent]
    assert not set(delivered) & {send.message_key for send in before["sends"]}
    assert len(after["events"]) == len({(e.source_id, e.message_id) for e in after["events"]})
    signups = [e for e in after["events"] if e.message_id == f"signup-{NEW[0]}"]
    assert len(signups) == 1


def _new_rows_follow_the_copied(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Rows numbered by a sequence (merge ids, dead letters' ``dead_seq``) neither collide with
    the copied ones nor sort before them."""
    newcomer = _profile(after, "after")
    (merge,) = after["merges"][newcomer.id]
    assert merge.into == newcomer.id and not merge.refused
    # The bouncing customer's second welcome email is a dead letter too, the newest.
    dead = after["dead"]
    assert [entry.command.message.step_id for entry in dead] == ["tour", "hello"]
    assert dead[1:] == before["dead"]


def test_a_url_that_is_not_postgresql_is_refused(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = installation.settings.data_dir
    assert main(["migrate", "--data-dir", data_dir, "--to", "sqlite:///elsewhere.db"]) == 2
    assert "--to must be a postgresql:// URL" in capsys.readouterr().err


def test_an_installation_already_on_postgresql_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "safar.toml"
    config.write_text('[storage]\nurl = "postgresql://safar:hunter2@db.internal/safar"\n')
    to = "postgresql://safar@db.example/safar"
    assert main(["migrate", "--config", str(config), "--data-dir", str(tmp_path), "--to", to]) == 2
    refusal = capsys.readouterr().err
    assert "but storage.url already names a database" in refusal
    assert "hunter2" not in refusal


def test_a_data_directory_without_an_installation_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    to = "postgresql://safar@db.example/safar"  # never reached
    assert main(["migrate", "--data-dir", str(tmp_path / "typo"), "--to", to]) == 2
    assert "no embedded installation in " in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.postgres
def test_a_copy_that_does_not_verify_leaves_the_target_without_data(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_schema_url()
    rows = migrate._rows

    def flip_consent(
        state: sqlite3.Connection, table: str, columns: Sequence[str]
    ) -> Iterator[tuple[Any, ...]]:
        for row in rows(state, table, columns):
            subscribed = columns.index("subscribed") if table == "journey_consents" else None
            if subscribed is None:
                yield row
            else:
                yield (*row[:subscribed], 1 - row[subscribed], *row[subscribed + 1 :])

    monkeypatch.setattr(migrate, "_rows", flip_consent)
    with pytest.raises(MigrationError, match="table journey_consents differs after copying"):
        migrate_to_postgres(installation.settings, url, installation.clock(), report=_quiet)
    assert holds_no_data(installation, url)
    monkeypatch.undo()
    # Tables a failed run left empty are no obstacle.
    copied = migrate_to_postgres(installation.settings, url, installation.clock(), report=_quiet)
    assert copied[0].name == "events" and copied[0].rows > 5_000


def test_an_installation_still_running_is_refused(
    installation: Installation, tmp_path: Path
) -> None:
    copy = copied(installation, tmp_path)
    clock = installation.clock()
    with open_stores(copy, clock) as stores:
        assert stores.leases.acquire("stepper", "worker-7", clock.now_ms(), 15_000) is not None
    to = "postgresql://safar@db.example/safar"  # never reached
    with pytest.raises(MigrationError, match=r"Safar is running .* stepper by worker-7"):
        migrate_to_postgres(copy, to, clock, report=_quiet)


@pytest.mark.postgres
@pytest.mark.parametrize("change", ["an event arrives", "a worker commits"])
def test_a_change_to_the_installation_while_migrating_fails_it(
    installation: Installation, tmp_path: Path, change: str
) -> None:
    url = postgres_schema_url()
    copy = copied(installation, tmp_path)
    clock = installation.clock()

    def meanwhile(line: str) -> None:
        if not line.startswith("sources:"):  # the last table copied
            return
        with open_stores(copy, clock) as stores:
            if change == "an event arrives":
                send(stores, clock, {"type": "track", "userId": NEW[0], "event": "Late"})
            else:
                stores.runs.commit(JourneyUpdate(schedule_ticks={"welcome": clock.now_ms()}))

    with pytest.raises(MigrationError, match="the installation changed while migrating"):
        migrate_to_postgres(copy, url, clock, report=meanwhile)
    assert holds_no_data(installation, url)


def copied(installation: Installation, tmp_path: Path) -> Settings:
    """The settings of a copy of the installation, for a test that changes it."""
    copy = settings_in(tmp_path / "data", installation.settings.journeys.policy_file)
    shutil.copytree(installation.settings.data_dir, copy.data_dir)
    return copy


def _quiet(line: str) -> None:
    """Migrate without printing what was copied."""
