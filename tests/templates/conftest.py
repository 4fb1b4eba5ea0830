"""Helpers for template tests: write template files into a temporary directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteTemplate = Callable[[str, str], Path]


@pytest.fixture
def write_template(tmp_path: Path) -> WriteTemplate:
    """Write ``<tmp>/<name>`` with dedented ``text``; returns its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
