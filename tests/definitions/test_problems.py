"""How problems read: ``file:line: field: message``, the form editors and CI logs link to."""

from __future__ import annotations

import pytest

from safar.definitions.journeys import parse_journey
from safar.definitions.problems import DefinitionError, Problem
from safar.definitions.validate import validate_journey
from safar.errors import SafarError, ValidationError


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (
            Problem("j.yaml", 12, "steps[3].send.template", "required"),
            "j.yaml:12: steps[3].send.template: required",
        ),
        (Problem("j.yaml", 3, "", "YAML syntax error: x"), "j.yaml:3: YAML syntax error: x"),
        (
            Problem("<journey>", 0, "steps[0].next", "no step 'x'"),
            "<journey>: steps[0].next: no step 'x'",
        ),
    ],
)
def test_format(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_definition_error_is_a_validation_error_listing_problems_in_order() -> None:
    error = DefinitionError(
        [
            Problem("b.yaml", 1, "", "x"),
            Problem("a.yaml", 9, "id", "y"),
            Problem("a.yaml", 2, "", "z"),
        ]
    )
    assert isinstance(error, ValidationError)
    assert isinstance(error, SafarError)
    assert error.status == 400
    assert str(error) == "a.yaml:2: z\na.yaml:9: id: y\nb.yaml:1: x"


def test_ids_may_be_in_any_script() -> None:
    journey = parse_journey(
        "id: سبد-خرید\nname: سبد خرید رها شده\nentry: {event: افزودن}\nsteps:\n"
        "  - {id: انتظار, wait: {for: 1h}}\n  - {id: 提醒, send: {channel: sms, template: t}}\n"
    )
    assert [step.id for step in journey.steps] == ["انتظار", "提醒"]
    assert validate_journey(journey) == []
