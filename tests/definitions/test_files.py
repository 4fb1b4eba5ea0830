"""``validate_paths``: what ``safar validate`` reports over files and directories."""

from __future__ import annotations

import textwrap
from pathlib import Path

from safar.definitions.files import validate_paths
from safar.definitions.problems import Problem

from .conftest import EXAMPLE

JOURNEY = textwrap.dedent(
    """\
    id: {id}
    name: Welcome
    entry: {{event: Signed Up}}
    steps:
      - id: hello
        send: {{channel: email, template: {template}}}
    """
)
TEMPLATE = textwrap.dedent(
    """\
    channel: email
    locales:
      en:
        subject: Hello
        html: <p>Hello {{ profile.traits.first_name }}</p>
    """
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(root: Path) -> Path:
    """A project with good files and every kind of file that is not a definition."""
    write(root / "journeys" / "welcome.yaml", JOURNEY.format(id="welcome", template="hello"))
    write(
        root / "journeys" / "nested" / "winback.yml", JOURNEY.format(id="winback", template="hello")
    )
    write(root / "templates" / "hello.yaml", TEMPLATE)
    write(root / "policy.yaml", "quiet_hours: {start: '21:00', end: '08:00'}\n")
    write(root / "segments" / "vip.yaml", "id: vip\nname: VIPs\nwhere: {trait: vip, eq: true}\n")
    write(root / "traits" / "orders.yaml", "id: orders\ncompute: {event: Order Completed}\n")
    write(root / "ci.yaml", "jobs: {test: {runs-on: ubuntu-latest}}\n")
    write(root / ".git" / "config.yaml", "not: [valid\n")
    write(root / "README.md", "not YAML at all: [\n")
    return root


def lines(problems: list[Problem], root: Path) -> list[str]:
    return [str(problem).replace(f"{root}/", "") for problem in problems]


def test_a_good_project_has_no_problems(tmp_path: Path) -> None:
    assert validate_paths([project(tmp_path)]) == []


def test_the_examples_have_no_problems() -> None:
    assert validate_paths([EXAMPLE]) == []
    assert validate_paths([EXAMPLE.parent]) == []
    assert validate_paths([EXAMPLE.parents[1]]) == []  # policy, templates, audiences too


def test_problems_name_file_line_and_field(tmp_path: Path) -> None:
    project(tmp_path)
    write(tmp_path / "journeys" / "typo.yaml", JOURNEY.format(id="typo", template="helo"))
    write(tmp_path / "journeys" / "broken.yaml", "id: broken\nname: [\n")
    assert lines(validate_paths([tmp_path]), tmp_path) == [
        "journeys/broken.yaml:3: YAML syntax error: while parsing a flow node, "
        "expected the node content, but found '<stream end>'",
        "journeys/typo.yaml:6: steps[0].send.template: no template 'helo' (did you mean 'hello'?)",
    ]


def test_templates_are_validated_and_used(tmp_path: Path) -> None:
    project(tmp_path)
    write(tmp_path / "templates" / "sms_only.yaml", "channel: sms\nlocales:\n  en: {text: Hi}\n")
    write(tmp_path / "templates" / "bad.yaml", "channel: pigeon\n")
    write(tmp_path / "journeys" / "wrong.yaml", JOURNEY.format(id="wrong", template="sms_only"))
    found = lines(validate_paths([tmp_path / "journeys"]), tmp_path)
    assert (
        "journeys/wrong.yaml:6: steps[0].send.template: template 'sms_only' is for sms, not email"
        in found
    )
    assert "templates/bad.yaml:1: channel: unknown channel 'pigeon'" in " ".join(found)
    assert not any("sms_only.yaml" in line for line in found)  # a good template, other channel


def test_an_explicit_templates_dir_wins(tmp_path: Path) -> None:
    project(tmp_path)
    write(tmp_path / "other" / "welcome_v2.yaml", TEMPLATE)
    found = validate_paths([tmp_path / "journeys"], templates_dir=tmp_path / "other")
    assert [(p.field, p.message) for p in found] == [
        ("steps[0].send.template", "no template 'hello'"),
        ("steps[0].send.template", "no template 'hello'"),
    ]


def test_without_a_templates_dir_templates_are_not_checked(tmp_path: Path) -> None:
    write(tmp_path / "flows" / "welcome.yaml", JOURNEY.format(id="welcome", template="anything"))
    assert validate_paths([tmp_path / "flows"]) == []


def test_a_templates_dir_beside_the_journey(tmp_path: Path) -> None:
    write(tmp_path / "welcome.yaml", JOURNEY.format(id="welcome", template="missing"))
    write(tmp_path / "templates" / "hello.yaml", TEMPLATE)
    [problem] = validate_paths([tmp_path / "welcome.yaml"])
    assert problem.message == "no template 'missing'"


def test_files_named_on_their_own(tmp_path: Path) -> None:
    project(tmp_path)
    found = validate_paths(
        [
            tmp_path / "ci.yaml",
            tmp_path / "nothing.yaml",
            tmp_path / "policy.yaml",
            tmp_path / "segments" / "vip.yaml",
        ]
    )
    assert lines(found, tmp_path) == [
        "ci.yaml:1: neither a journey (no 'steps'), a segment (no 'where'), a computed trait "
        "(no 'compute') nor a policy file",
        "nothing.yaml: no such file or directory",
    ]


def test_a_policy_file_is_found_by_its_keys_or_name(tmp_path: Path) -> None:
    write(tmp_path / "policy.yml", "")  # empty: the default policy
    write(tmp_path / "rules.yaml", "frequency_caps:\n  - {id: a, max: 0, per: 1d}\n")
    assert lines(validate_paths([tmp_path]), tmp_path) == [
        "rules.yaml:1: a second policy file; policy.yml is the policy",
        "rules.yaml:2: frequency_caps[0].max: must be at least 1; to stop messages altogether use "
        "a suppression",
    ]


def test_a_file_named_twice_is_checked_once(tmp_path: Path) -> None:
    write(tmp_path / "policy.yaml", "quiet_hours: {start: '9pm'}\n")
    assert len(validate_paths([tmp_path, tmp_path / "policy.yaml"])) == 1


def test_policy_conditions_are_compiled(tmp_path: Path) -> None:
    write(tmp_path / "policy.yaml", "suppressions:\n  - id: a\n    where: event.x == 1\n")
    [problem] = validate_paths([tmp_path / "policy.yaml"])
    assert (problem.line, problem.field) == (3, "suppressions[0].where")
    assert "unknown variable 'event'" in problem.message


def test_journey_conditions_are_compiled(tmp_path: Path) -> None:
    text = JOURNEY.format(id="j", template="t").replace(
        "{event: Signed Up}", "{event: A, where: x >}"
    )
    write(tmp_path / "j.yaml", text)
    [problem] = validate_paths([tmp_path / "j.yaml"])
    assert (problem.line, problem.field) == (3, "entry.where")
    assert problem.message.startswith("bad condition: ")


def test_a_journey_id_used_twice(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", JOURNEY.format(id="same", template="t"))
    write(tmp_path / "b.yaml", JOURNEY.format(id="same", template="t"))
    assert lines(validate_paths([tmp_path]), tmp_path) == [
        "b.yaml:1: id: journey id 'same' is also a.yaml's"
    ]


def test_unreadable_text(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_bytes(b"id: \xff\xfe\n")
    [problem] = validate_paths([tmp_path / "j.yaml"])
    assert problem.message.startswith("cannot read the file: ")


def test_segments_named_by_journeys_and_the_policy_must_be_among_the_files(
    tmp_path: Path,
) -> None:
    project(tmp_path)
    write(
        tmp_path / "journeys" / "vip_welcome.yaml",
        JOURNEY.format(id="vip-welcome", template="hello").replace(
            "entry: {event: Signed Up}", "entry: {segment: vips}"
        ),
    )
    write(tmp_path / "policy.yaml", "suppressions:\n  - {id: busy, segment: vip}\n")
    assert lines(validate_paths([tmp_path]), tmp_path) == [
        "journeys/vip_welcome.yaml:3: entry.segment: no segment 'vips' among the files given"
        " (did you mean 'vip'?)"
    ]
    # Without segment files, named segments may be published already: nothing to check.
    (tmp_path / "segments" / "vip.yaml").unlink()
    assert validate_paths([tmp_path / "journeys", tmp_path / "policy.yaml"]) == []
