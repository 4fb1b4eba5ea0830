"""``safar audiences publish|list|archive|export|preview`` over a SQLite data directory."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from safar.cli import main
from safar.clock import SystemClock
from safar.config import Settings, load_settings
from safar.ingest.validate import event_from_json
from safar.runtime.worker import Worker
from safar.stores.bundle import open_stores

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AUDIENCES = EXAMPLES / "audiences"
VIPS = "id: vips\nname: VIPs\nwhere:\n  trait: vip\n  eq: true\n"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory holding a small shop: u1 a VIP with two big orders, u2 a VIP without
    orders, u3 with one small order."""
    directory = tmp_path / "data"
    now = datetime.now(tz=UTC).isoformat()
    order = "Order Completed"
    raw: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u1", "traits": {"vip": True, "email": "u1@example.com"}},
        {"type": "identify", "userId": "u2", "traits": {"vip": True, "email": "u2@example.com"}},
        {"type": "identify", "userId": "u3", "traits": {"vip": False, "phone": "+14155550103"}},
        {"type": "track", "userId": "u1", "event": order, "properties": {"revenue": 150}},
        {"type": "track", "userId": "u1", "event": order, "properties": {"revenue": 250}},
        {"type": "track", "userId": "u3", "event": order, "properties": {"revenue": 20}},
    ]
    settings = _settings(directory)
    with open_stores(settings, SystemClock()) as stores:
        events = [
            event_from_json(
                {**body, "messageId": f"m{n}", "timestamp": now},
                source_id="test",
                received_at=SystemClock().now_ms(),
                sent_at=None,
                default_type=None,
                location=f"event {n}",
                limits=settings.ingest,
            )
            for n, body in enumerate(raw)
        ]
        stores.events.append(events)
    work(directory)
    return directory


def _settings(directory: Path) -> Settings:
    return load_settings(data_dir=directory, environ={})


def work(directory: Path) -> None:
    """What the worker does: profiles, then audiences, until nothing is left."""
    settings = _settings(directory)
    with open_stores(settings, SystemClock()) as stores:
        worker = Worker(stores, settings, SystemClock())
        while worker.step_once():
            pass


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["audiences", *args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_a_directory_then_nothing_changes_again(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, err = run(capsys, data_dir, "publish", str(AUDIENCES))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(list(AUDIENCES.glob("*.yaml")))
    assert "published segment vip-lapsed version 1" in lines
    assert "published computed trait revenue_90d version 1" in lines
    code, out, _ = run(capsys, data_dir, "publish", str(AUDIENCES / "vip_lapsed.yaml"))
    assert code == 0
    assert out == "segment vip-lapsed version 1 is already published unchanged\n"


def test_publish_walks_past_journeys_but_refuses_one_named(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, _ = run(capsys, data_dir, "publish", str(EXAMPLES))
    assert code == 0 and "published segment repeat-buyers version 1" in out
    journey = EXAMPLES / "journeys" / "welcome.yaml"
    code, out, err = run(capsys, data_dir, "publish", str(journey))
    assert code == 1 and out == ""
    assert f"{journey}:1: neither a segment" in err
    code, _, err = run(capsys, data_dir, "publish", str(data_dir / "missing.yaml"))
    assert code == 1 and "no such file or directory" in err


def test_publish_reports_every_problem_and_publishes_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "vips.yaml").write_text(VIPS)
    (folder / "loyal.yaml").write_text(
        "id: loyal\nname: Loyal\nwhere:\n  all:\n    - member: vips\n    - member: vipz\n"
    )
    code, out, err = run(capsys, data_dir, "publish", str(folder))
    assert code == 1 and out == ""
    assert f"{folder / 'loyal.yaml'}:6: where.all[1].member: no segment 'vipz'" in err
    assert "1 problem(s); nothing published" in err
    assert run(capsys, data_dir, "list") == (0, "", "")


def test_publish_checks_against_live_segments(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    vips = tmp_path / "vips.yaml"
    vips.write_text(VIPS)
    loyal = tmp_path / "loyal.yaml"
    loyal.write_text("id: loyal\nname: Loyal\nwhere:\n  member: vips\n")
    assert run(capsys, data_dir, "publish", str(vips))[0] == 0
    assert run(capsys, data_dir, "publish", str(loyal))[0] == 0
    vips.write_text(VIPS.replace("  trait: vip\n  eq: true\n", "  member: loyal\n"))
    code, _, err = run(capsys, data_dir, "publish", str(vips))
    assert code == 1
    assert f"{vips}:4: where.member: segments would refer to each other in a cycle" in err
    trait = tmp_path / "trait.yaml"
    trait.write_text("id: vips\ncompute:\n  event: Order Completed\n")
    code, _, err = run(capsys, data_dir, "publish", str(trait))
    assert code == 2 and "'vips' is already a segment" in err


def test_list_archive_and_state(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    run(capsys, data_dir, "publish", str(AUDIENCES))
    code, out, _ = run(capsys, data_dir, "list")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert rows["vip-lapsed"][1:6] == ["segment", "v1", "published", "0", "computing"]
    assert rows["orders_30d"][1:6] == ["computed_trait", "v1", "published", "-", "computing"]
    work(data_dir)
    _, out, _ = run(capsys, data_dir, "list")
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines()}
    assert rows["vip-lapsed"][4:7] == ["1", "ready", "VIPs who have not ordered in 30 days"]
    assert rows["repeat-buyers"][4:6] == ["1", "ready"]
    assert rows["orders_30d"][4:6] == ["-", "ready"]

    code, out, _ = run(capsys, data_dir, "archive", "repeat-buyers")
    assert (code, out) == (0, "archived segment repeat-buyers version 1\n")
    _, out, _ = run(capsys, data_dir, "list")
    assert "repeat-buyers\tsegment\tv1\tarchived\t-\t-\t" in out
    code, _, err = run(capsys, data_dir, "archive", "repeat-buyers")
    assert code == 2 and "not published" in err
    code, _, err = run(capsys, data_dir, "archive", "nothing")
    assert code == 2 and "no segment or computed trait 'nothing'" in err


def test_archive_refuses_a_segment_others_build_on(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "vips.yaml").write_text(VIPS)
    (tmp_path / "loyal.yaml").write_text("id: loyal\nname: Loyal\nwhere:\n  member: vips\n")
    assert (
        run(capsys, data_dir, "publish", str(tmp_path / "vips.yaml"), str(tmp_path / "loyal.yaml"))[
            0
        ]
        == 0
    )
    code, _, err = run(capsys, data_dir, "archive", "vips")
    assert code == 2 and "named with member: by loyal" in err


def test_export_to_stdout_and_to_a_file(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "vips.yaml").write_text(VIPS)
    run(capsys, data_dir, "publish", str(tmp_path / "vips.yaml"))
    work(data_dir)
    code, out, _ = run(capsys, data_dir, "export", "vips")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["profile_id", "since", "user_id", "email", "phone", "anonymous_id"]
    assert sorted((r[2], r[3]) for r in rows[1:]) == [
        ("u1", "u1@example.com"),
        ("u2", "u2@example.com"),
    ]
    target = tmp_path / "vips.jsonl"
    code, out, _ = run(
        capsys, data_dir, "export", "vips", "--format", "jsonl", "--output", str(target)
    )
    assert (code, out) == (0, "")
    members = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(m["user_id"] for m in members) == ["u1", "u2"]
    assert members[0]["identifiers"]["email"][0].endswith("@example.com")
    code, _, err = run(capsys, data_dir, "export", "nobody")
    assert code == 2 and "no segment 'nobody'" in err


def test_preview_a_segment_and_a_computed_trait(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, _ = run(capsys, data_dir, "preview", str(AUDIENCES / "repeat_buyers.yaml"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("repeat-buyers: 1 members (3 customers evaluated in ")
    assert lines[1].endswith("email:u1@example.com user_id:u1")
    code, out, _ = run(
        capsys, data_dir, "preview", str(AUDIENCES / "revenue_90d.yaml"), "--json", "--sample", "1"
    )
    assert code == 0
    found = msgspec.json.decode(out)
    assert found["summary"] == {"count": 3, "min": 0, "max": 400, "top": []}
    assert len(found["sample"]) == 1 and found["evaluated"] == 3
    code, out, _ = run(
        capsys, data_dir, "preview", str(AUDIENCES / "revenue_90d.yaml"), "--limit", "1"
    )
    assert "1 customers evaluated" in out.splitlines()[0]
    assert "  min " in out
    code, _, err = run(
        capsys, data_dir, "preview", str(AUDIENCES / "open_ticket.yaml"), "--sample", "500"
    )
    assert code == 2 and "--sample" in err
