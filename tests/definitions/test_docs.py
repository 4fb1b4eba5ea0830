"""The examples in docs/journeys.md, docs/policy.md and docs/audiences.md read as the docs say."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from safar.definitions.audiences import parse_audience, validate_audiences
from safar.definitions.journeys import parse_journey
from safar.definitions.policy import parse_policy
from safar.definitions.validate import cel_checker, validate_journey
from safar.model.journeys import Journey

from .conftest import EXAMPLE, without_lines

DOCS = Path(__file__).parents[2] / "docs"


def blocks(name: str, language: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def as_journey(block: str) -> str:
    """A snippet made into a whole journey: steps are wrapped, entry/goal/policy completed."""
    if block.startswith("id:"):
        return block
    if block.startswith("- "):
        return "id: j\nname: J\nentry: {event: A}\nsteps:\n" + textwrap.indent(block, "  ")
    head = "" if block.startswith("entry:") else "entry: {event: A}\n"
    return "id: j\nname: J\n" + head + block + "steps:\n  - {id: a, exit: true}\n"


@pytest.mark.parametrize("block", blocks("journeys.md", "yaml"))
def test_journey_snippets_parse(block: str) -> None:
    journey = parse_journey(as_journey(block))
    if block.startswith("id:"):
        assert validate_journey(journey, conditions=cel_checker()) == []


def test_the_documented_example_is_the_example_file() -> None:
    assert blocks("journeys.md", "yaml")[0] == EXAMPLE.read_text(encoding="utf-8")


def test_the_python_example_builds_the_example() -> None:
    [code] = blocks("journeys.md", "python")
    namespace: dict[str, object] = {}
    exec(code, namespace)
    journey = namespace["journey"]
    assert isinstance(journey, Journey)
    assert without_lines(journey) == without_lines(parse_journey(EXAMPLE.read_text()))


@pytest.mark.parametrize("block", blocks("policy.md", "yaml"))
def test_policy_snippets_parse(block: str) -> None:
    parse_policy(block)


def test_audience_examples_read_and_validate_together() -> None:
    definitions = [
        parse_audience(block)
        for block in blocks("audiences.md", "yaml")
        if block.startswith("id:")  # whole definitions; other blocks are fragments
    ]
    assert len(definitions) >= 5
    assert validate_audiences(definitions) == []
