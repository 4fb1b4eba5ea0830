"""YAML with lines: safe_load's values, each key and item's line, and errors that name it."""

from __future__ import annotations

import datetime
import textwrap

import pytest
import yaml

from safar.definitions.problems import DefinitionError
from safar.definitions.yamlsource import MAX_NODES, Map, Scalar, Seq, line_map, load, plain

DOC = textwrap.dedent(
    """\
    id: cart
    entry:
      event: Product Added
    steps:
      - id: a
        wait: {for: 1h}

      - id: b
        send:
          channel: email
    numbers: [1, 2.5, true, null, 2026-11-01, "x"]
    """
)


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(DefinitionError) as caught:
        load(text, "f.yaml")
    assert all(problem.file == "f.yaml" for problem in caught.value.problems)
    return [(problem.line, problem.message) for problem in caught.value.problems]


def test_plain_values_are_what_safe_load_gives() -> None:
    assert plain(load(DOC, "f.yaml")) == yaml.safe_load(DOC)


def test_every_key_and_item_has_its_line() -> None:
    lines = line_map(load(DOC, "f.yaml"))
    assert lines["id"] == 1
    assert lines["entry"] == 2
    assert lines["entry.event"] == 3
    assert lines["steps[0]"] == 5
    assert lines["steps[0].wait"] == 6
    assert lines["steps[0].wait.for"] == 6
    assert lines["steps[1]"] == 8
    assert lines["steps[1].send.channel"] == 10
    assert lines["numbers[4]"] == 11


def test_nodes_keep_types() -> None:
    root = load(DOC, "f.yaml")
    assert isinstance(root, Map)
    numbers = root.items["numbers"]
    assert isinstance(numbers, Seq)
    assert [item.value for item in numbers.items if isinstance(item, Scalar)] == [
        1,
        2.5,
        True,
        None,
        datetime.date(2026, 11, 1),
        "x",
    ]


def test_times_of_day_stay_text() -> None:
    # YAML 1.1 reads 21:00 as the base-60 number 1260; people mean a time.
    root = plain(load("start: 21:00\nend: 08:00\nquoted: '21:00'\nnumber: 1260\n", "f.yaml"))
    assert root == {"start": "21:00", "end": "08:00", "quoted": "21:00", "number": 1260}


def test_a_duplicate_key_names_both_lines() -> None:
    assert problems("id: a\nname: x\nid: b\n") == [(3, "duplicate key 'id' (first at line 1)")]


def test_keys_must_be_text() -> None:
    assert problems("on: x\n1: y\n") == [
        (1, "a key must be text, not True; put it in quotes"),
        (2, "a key must be text, not 1; put it in quotes"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\n  b: 2\n", 2, "YAML syntax error: mapping values are not allowed here"),
        ("steps:\n  - id: a\n - id: b\n", 3, "YAML syntax error: "),
        ("a: [1, 2\nb: 3\n", 2, "YAML syntax error: while parsing a flow sequence"),
        ("a: *nowhere\n", 1, "YAML syntax error: found undefined alias 'nowhere'"),
        ("a: 1\n---\nb: 2\n", 2, "YAML syntax error: expected a single document"),
        ("a: !!python/object:os.system x\n", 1, "bad value"),
        ("a: 2026-13-45\n", 1, "bad value '2026-13-45'"),
        ("a: !custom {b: 1}\n", 1, "unsupported tag !custom"),
    ],
)
def test_errors_name_the_line(text: str, line: int, message: str) -> None:
    [(found_line, found)] = problems(text)
    assert (found_line, found[: len(message)]) == (line, message)


def test_anchors_aliases_and_merge_keys() -> None:
    text = textwrap.dedent(
        """\
        base: &base
          channel: email
          template: a
        one:
          <<: *base
          template: b
        two: *base
        """
    )
    root = load(text, "f.yaml")
    assert plain(root) == yaml.safe_load(text)
    lines = line_map(root)
    assert lines["one.template"] == 6  # written here, overriding the merged one
    assert lines["one.channel"] == 2  # merged: where it is written


def test_a_recursive_alias_is_an_error() -> None:
    assert problems("a: &x [1, *x]\n") == [(1, "an alias refers to the value that contains it")]


def test_nested_aliases_cannot_blow_up() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for index in range(1, 8):
        lines.append(f"a{index}: &a{index} [" + ", ".join([f"*a{index - 1}"] * 10) + "]")
    [(_, message)] = problems("\n".join(lines) + "\n")
    assert message == f"the document expands to more than {MAX_NODES} values"


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    assert problems("a: " + "[" * 1200 + "]" * 1200 + "\n") == [(1, "values nested too deeply")]


def test_an_empty_document_is_null() -> None:
    assert load("", "f.yaml") == Scalar(None, 1)
    assert load("# nothing\n", "f.yaml") == Scalar(None, 1)
