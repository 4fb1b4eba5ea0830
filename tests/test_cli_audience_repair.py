"""``safar audiences repair ID… | --all`` over a SQLite data directory: requests that the
worker's audience processor carries out the next time it reads the catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from safar.cli import main
from safar.clock import SystemClock
from safar.config import Settings, load_settings
from safar.definitions import parse_audience
from safar.ingest.validate import event_from_json
from safar.model.audiences import SEGMENT_ENTERED
from safar.ports import AudienceUpdate
from safar.runtime.audience_catalog import save_draft
from safar.runtime.worker import Worker
from safar.stores.bundle import open_stores

VIPS = "id: vips\nname: VIPs\nwhere:\n  trait: vip\n  eq: true\n"
ORDERS = "id: orders\ncompute:\n  event: Order Completed\n"
DRAFT = "id: draft\nname: Draft\nwhere:\n  trait: vip\n  eq: false\n"


def settings(directory: Path) -> Settings:
    return load_settings(data_dir=directory, environ={})


def work(directory: Path) -> None:
    """What the worker does: profiles, then audiences, until nothing is left."""
    with open_stores(settings(directory), SystemClock()) as stores:
        worker = Worker(stores, settings(directory), SystemClock())
        while worker.step_once():
            pass


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["audiences", *args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """u1 and u2, VIPs, u1 with an order; vips and orders published and evaluated; a draft."""
    directory = tmp_path / "data"
    now = datetime.now(tz=UTC).isoformat()
    raw = [
        {"type": "identify", "userId": "u1", "traits": {"vip": True}},
        {"type": "identify", "userId": "u2", "traits": {"vip": True}},
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {}},
    ]
    config = settings(directory)
    with open_stores(config, SystemClock()) as stores:
        stores.events.append(
            [
                event_from_json(
                    {**body, "messageId": f"m{n}", "timestamp": now},
                    source_id="test",
                    received_at=SystemClock().now_ms(),
                    sent_at=None,
                    default_type=None,
                    location=f"event {n}",
                    limits=config.ingest,
                )
                for n, body in enumerate(raw)
            ]
        )
    for name, text in (("vips", VIPS), ("orders", ORDERS)):
        (tmp_path / f"{name}.yaml").write_text(text)
    assert run(capsys, directory, "publish", str(tmp_path / "vips.yaml"))[0] == 0
    assert run(capsys, directory, "publish", str(tmp_path / "orders.yaml"))[0] == 0
    with open_stores(config, SystemClock()) as stores:
        save_draft(stores.audience_catalog, parse_audience(DRAFT), SystemClock().now_ms())
    work(directory)
    return directory


def test_repair_named_audiences_and_the_worker_carries_it_out(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    with open_stores(settings(data_dir), SystemClock()) as stores:
        u2 = stores.profiles.find(("user_id", "u2"))
        assert u2 is not None
        [lost] = stores.audiences.memberships([u2.id]).values()
        lost.segments.clear()
        stores.audiences.commit(AudienceUpdate(memberships=[lost]))
        after = stores.events.last_seq()
    code, out, err = run(capsys, data_dir, "repair", "vips", "orders")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "repair requested for segment vips version 1",
        "repair requested for computed trait orders version 1",
    ]
    work(data_dir)
    with open_stores(settings(data_dir), SystemClock()) as stores:
        assert stores.audiences.count("vips") == 2
        entered = [e for e in stores.events.read(after, 100) if e.name == SEGMENT_ENTERED]
        assert [e.user_id for e in entered] == ["u2"]
        assert stores.audience_catalog.repairs() == {"vips": 1, "orders": 1}
        assert stores.audiences.progress()["repair:vips"] == "1"
    _, out, _ = run(capsys, data_dir, "list")
    assert [line.split("\t")[5] for line in out.splitlines()] == ["-", "ready", "ready"]


def test_repair_all_asks_for_every_published_one(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, _ = run(capsys, data_dir, "repair", "--all")
    assert code == 0
    assert out.splitlines() == [
        "repair requested for computed trait orders version 1",
        "repair requested for segment vips version 1",
    ]


def test_repair_refuses_what_it_cannot_repair_and_requests_nothing(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, _, err = run(capsys, data_dir, "repair", "vips", "nobody")
    assert code == 2 and "no segment or computed trait 'nobody'" in err
    code, _, err = run(capsys, data_dir, "repair", "draft")
    assert code == 2 and "'draft' is not published" in err
    for args in ([], ["vips", "--all"]):
        code, _, err = run(capsys, data_dir, "repair", *args)
        assert code == 2 and "name the segments and computed traits to repair, or pass --all" in err
    with open_stores(settings(data_dir), SystemClock()) as stores:
        assert stores.audience_catalog.repairs() == {}
