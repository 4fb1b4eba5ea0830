"""The CLI against a real data directory, beside a running server."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from safar.testing import wait_until
from tests.e2e.live import LiveServer, safar

pytestmark = pytest.mark.slow


def test_keys_and_sources_print_the_secret_alone_on_the_last_line(tmp_path: Path) -> None:
    result = safar(tmp_path, "keys", "create", "--scope", "admin")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk_") and " " not in secret
    result = safar(tmp_path, "sources", "create", "web")
    write_key = result.stdout.strip().splitlines()[-1]
    assert write_key.startswith("wk_") and " " not in write_key
    listing = safar(tmp_path, "sources", "list")
    assert write_key in listing.stdout
    bad = safar(tmp_path, "keys", "create", "--scope", "root")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


def test_import_beside_a_running_server_then_show_the_profile(live: LiveServer) -> None:
    csv = live.data_dir.parent / "crm.csv"
    csv.write_text("user_id,email,name\n42,sara@example.com,سارا\n43\n", encoding="utf-8")
    jsonl = live.data_dir.parent / "events.jsonl"
    jsonl.write_text(
        '{"type":"track","userId":"42","event":"Order Completed","messageId":"o-1"}\n'
        '{"type":"track","event":"Lost"}\n',
        encoding="utf-8",
    )
    result = live.cli("import", str(csv), "--source", "test-site")
    assert result.returncode == 1
    assert "rejected line 3" in result.stderr
    assert "1 events stored" in result.stdout
    result = live.cli("import", str(jsonl), "--source", "test-site")
    assert "rejected line 2" in result.stderr
    assert "1 events stored" in result.stdout

    # The server saw the imported events too: a resend from the same source is a duplicate.
    body = b'{"batch":[{"type":"track","userId":"42","event":"Order Completed","messageId":"o-1"}]}'
    status, _ = live.request("POST", "/v1/batch", body, {"Authorization": _basic(live.write_key)})
    assert status == 200
    live.wait_processed()
    _, health = live.request("GET", "/healthz")
    assert health["events"] == 2

    shown = live.cli("profiles", "show", "email:SARA@example.com")
    assert shown.returncode == 0, shown.stderr
    profile = msgspec.json.decode(shown.stdout)
    assert profile["identifiers"]["user_id"] == ["42"]
    assert profile["traits"]["name"] == "سارا"
    assert [e.get("event") for e in profile["recent_events"]] == ["Order Completed", None]

    missing = live.cli("profiles", "show", "user_id:nobody")
    assert missing.returncode == 1 and "no profile" in missing.stderr

    # The server keeps the previews' warehouse caught up by itself; a preview from the CLI
    # shares it (each waits for the other's lock).
    wait_until(lambda: (live.data_dir / "warehouse.duckdb").exists(), timeout=30)
    draft = live.data_dir.parent / "buyers.yaml"
    draft.write_text(
        "id: buyers\nname: Buyers\nwhere: {performed: Order Completed, at_least: 1}\n",
        encoding="utf-8",
    )
    previewed = live.cli("audiences", "preview", str(draft), "--json")
    assert previewed.returncode == 0, previewed.stderr
    assert msgspec.json.decode(previewed.stdout)["size"] == 1


def test_demo_seeds_once(tmp_path: Path) -> None:
    result = safar(tmp_path, "demo", "--customers", "200", "--no-serve")
    assert result.returncode == 0, result.stderr
    info = msgspec.json.decode((tmp_path / "demo.json").read_bytes())
    assert info["events"] > 2000
    assert set(info["journeys"]) == {
        "abandoned-cart",
        "browse-offer",
        "post-purchase-survey",
        "welcome",
        "winback",
    }
    listed = safar(tmp_path, "journeys", "list")
    assert listed.returncode == 0 and listed.stdout.count("published") == 5
    simulated = safar(
        tmp_path,
        "journeys",
        "simulate",
        "examples/journeys/abandoned_cart.yaml",
        "--events",
        info["history"],
        "--until",
        "3d",
        "--json",
    )
    assert simulated.returncode == 0, simulated.stderr
    assert msgspec.json.decode(simulated.stdout)["customers_entered"] > 0
    shown = safar(tmp_path, "profiles", "show", info["sample_ref"])
    assert shown.returncode == 0, shown.stderr
    assert msgspec.json.decode(shown.stdout)["recent_events"]
    again = safar(tmp_path, "demo", "--customers", "200", "--no-serve")
    assert again.returncode == 0
    assert msgspec.json.decode((tmp_path / "demo.json").read_bytes()) == info


def _basic(write_key: str) -> str:
    from base64 import b64encode

    return "Basic " + b64encode(f"{write_key}:".encode()).decode()


def test_serve_on_a_port_in_use_says_so(live: LiveServer) -> None:
    result = live.cli("serve", "--port", str(live.port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{live.port}" in result.stderr
    assert "--port" in result.stderr
