"""The link secret: created whole, shared by concurrent starters, refused when damaged."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from safar.errors import ConfigError
from safar.runtime.links import Links, load_secret


def test_created_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "link-secret"
    first = load_secret(path)
    assert len(first) == 32 and load_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["link-secret"]  # no temporary left


def test_processes_starting_together_share_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "link-secret"
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: load_secret(path), range(32)))
    assert len(found) == 1


@pytest.mark.parametrize("content", ["", "abc", "not hex at all", "00" * 8])
def test_a_damaged_secret_is_refused_not_used(tmp_path: Path, content: str) -> None:
    path = tmp_path / "link-secret"
    path.write_text(content)
    with pytest.raises(ConfigError, match="does not hold a valid link secret"):
        load_secret(path)


def test_tokens_from_another_secret_do_not_verify(tmp_path: Path) -> None:
    from safar.errors import ValidationError

    ours = Links(load_secret(tmp_path / "a"), "http://x")
    theirs = Links(load_secret(tmp_path / "b"), "http://x")
    token = theirs.token({"k": "m1"})
    assert ours.verify(ours.token({"k": "m1"})) == {"k": "m1"}
    with pytest.raises(ValidationError):
        ours.verify(token)
