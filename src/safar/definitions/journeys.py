"""Journey definition files: YAML text to a :class:`~safar.model.journeys.Journey`.

This module checks the shape of a file: known keys, types, required fields, durations and the
few fixed vocabularies (``reentry``, ``quiet_hours``). What needs the whole journey or the world
around it (step targets, loops, stages, channels, templates, conditions) is
:func:`safar.definitions.validate.validate_journey`'s job, so that journeys built in Python get
the same checks. The format is documented in ``docs/journeys.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypedDict, get_args

from safar.definitions.fields import Fields, Report, describe
from safar.definitions.problems import DefinitionError
from safar.definitions.yamlsource import Map, Node, Scalar, line_map, load, plain
from safar.model.journeys import (
    EXIT,
    AnyStep,
    Branch,
    Case,
    Emit,
    Entry,
    EventMatch,
    Exit,
    Goal,
    Journey,
    JourneyPolicy,
    QuietHoursAction,
    Reentry,
    Send,
    Split,
    SplitBranch,
    UpdateProfile,
    Wait,
    Webhook,
)

JOURNEY_KEYS: Final = (
    "id", "name", "description", "stage", "context", "entry", "goal", "policy", "steps"
)  # fmt: skip
ENTRY_KEYS: Final = (
    "event", "segment", "where", "schedule", "api", "reentry", "cooldown", "max_active"
)  # fmt: skip
GOAL_KEYS: Final = ("event", "where", "within")
POLICY_KEYS: Final = ("category", "priority", "quiet_hours")
#: Keys any step may have besides its kind.
STEP_KEYS: Final = ("id", "next", "stage", "touchpoint")
#: The key that says what a step does.
STEP_KINDS: Final = ("wait", "branch", "split", "send", "update", "webhook", "emit", "exit")
WAIT_KEYS: Final = ("for", "until", "event", "where", "timeout", "timeout_next")
SPLIT_KEYS: Final = ("seed", "branches")
SPLIT_BRANCH_KEYS: Final = ("name", "weight", "next")
SEND_KEYS: Final = ("channel", "template", "category")
UPDATE_KEYS: Final = ("set", "increment", "unset")
WEBHOOK_KEYS: Final = ("url", "method", "body", "headers", "save", "timeout")
EMIT_KEYS: Final = ("event", "properties")
EXIT_KEYS: Final = ("reason",)

_ORIGIN: Final = "<journey>"
_NO_NEXT: Final = {
    "branch": "each case names its own, and 'else' the one taken when no case holds",
    "split": "each branch names its own",
    "exit": "the journey ends here",
}


def parse_journey(text: str, origin: str | None = None) -> Journey:
    """Read a journey file. ``origin`` (its path) names the file in problems and is kept in
    ``Journey.origin``. Raises :class:`DefinitionError` listing every problem found."""
    return load_journey(text, origin)[0]


def load_journey(text: str, origin: str | None = None) -> tuple[Journey, dict[str, int]]:
    """Like :func:`parse_journey`, also returning the line of every field path
    (``steps[3].send.template``), for :func:`~safar.definitions.validate.validate_journey`."""
    root = load(text, origin or _ORIGIN)
    return journey_from_node(root, origin), line_map(root)


def journey_from_node(root: Node, origin: str | None = None) -> Journey:
    """The journey in an already loaded YAML document; raises :class:`DefinitionError`."""
    report = Report(origin or _ORIGIN)
    top = Fields(report, root, "", JOURNEY_KEYS, ("id", "name", "entry", "steps"))
    journey = Journey(
        id=top.text("id"),
        name=top.text("name"),
        description=top.optional_text("description"),
        stage=top.optional_text("stage"),
        context=top.any_map("context"),
        entry=_entry(top.mapping("entry", ENTRY_KEYS)) if "entry" in top else Entry(),
        goal=_goal(top.mapping("goal", GOAL_KEYS, ("event",))) if "goal" in top else None,
        policy=_policy(top.mapping("policy", POLICY_KEYS)) if "policy" in top else JourneyPolicy(),
        steps=tuple(_step(report, path, node) for path, node in top.items_of("steps")),
        origin=origin,
    )
    if report.problems:
        raise DefinitionError(report.problems)
    return journey


def _entry(f: Fields) -> Entry:
    return Entry(
        line=f.line,
        event=f.optional_text("event"),
        segment=f.optional_text("segment"),
        where=f.optional_text("where"),
        schedule=f.optional_text("schedule"),
        api=f.boolean("api", False),
        reentry=f.choice("reentry", get_args(Reentry), "never"),
        cooldown_ms=f.duration("cooldown") or 0,
        max_active=f.integer("max_active", 1),
    )


def _goal(f: Fields) -> Goal:
    return Goal(
        line=f.line,
        event=f.text("event"),
        where=f.optional_text("where"),
        within_ms=f.duration("within"),
    )


def _policy(f: Fields) -> JourneyPolicy:
    return JourneyPolicy(
        line=f.line,
        category=f.text("category", "marketing"),
        priority=f.integer("priority", 50),
        quiet_hours=f.choice("quiet_hours", get_args(QuietHoursAction), "delay"),
    )


class _Common(TypedDict):
    line: int
    id: str
    next: str | None
    stage: str | None
    touchpoint: str | None


def _step(report: Report, path: str, node: Node) -> AnyStep:
    present = node.items if isinstance(node, Map) else {}
    kinds = [key for key in STEP_KINDS if key in present]
    # With one kind, the other kinds are unknown keys; with none or several, that is the problem.
    allowed = STEP_KEYS + (tuple(kinds) if len(kinds) == 1 else STEP_KINDS)
    f = Fields(report, node, path, allowed, ("id",))
    if f.is_map and not kinds:
        report.add(f.line, path, "a step needs one of: " + ", ".join(STEP_KINDS))
    elif len(kinds) > 1:
        found = " and ".join(kinds)
        report.add(f.line, path, f"a step does one thing, this one has {found}; make more steps")
    kind = kinds[0] if kinds else "exit"
    if len(kinds) == 1 and kind in _NO_NEXT and "next" in f:
        article = "an" if kind == "exit" else "a"
        f.problem("next", f"{article} {kind} step has no 'next': {_NO_NEXT[kind]}")
    common = _Common(
        line=f.line,
        id=f.text("id"),
        next=f.optional_text("next"),
        stage=f.optional_text("stage"),
        touchpoint=f.optional_text("touchpoint"),
    )
    return _KINDS[kind](f, common)


def _wait(step: Fields, common: _Common) -> Wait:
    f = step.mapping("wait", WAIT_KEYS)
    if f.is_map:
        given = [key for key in ("for", "until", "event") if key in f]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            step.problem("wait", f"a wait needs one of for, until or event; found {found}")
        if "event" not in f:
            for key in ("where", "timeout", "timeout_next"):
                if key in f:
                    f.problem(key, f"'{key}' belongs to a wait for an event")
        elif "timeout" not in f:
            f.problem("timeout", "a wait for an event needs a timeout, e.g. timeout: 3d")
    event = None
    if "event" in f:
        event = EventMatch(
            line=f.line_of("event"), event=f.text("event"), where=f.optional_text("where")
        )
    return Wait(
        **common,
        duration_ms=f.duration("for"),
        until=f.optional_text("until"),
        event=event,
        timeout_ms=f.duration("timeout"),
        timeout_next=f.optional_text("timeout_next"),
    )


def _branch(step: Fields, common: _Common) -> Branch:
    cases: list[Case] = []
    otherwise = EXIT
    items = step.items_of("branch")
    seen_else = False
    for index, (path, node) in enumerate(items):
        if isinstance(node, Map) and "else" in node.items:
            f = Fields(step.report, node, path, ("else",), ("else",))
            if seen_else:
                f.problem("else", "a branch has one 'else'")
            elif index != len(items) - 1:
                f.problem("else", "'else' comes last: the cases after it would never be tried")
            seen_else = True
            otherwise = f.text("else", EXIT)
        else:
            f = Fields(step.report, node, path, ("if", "next"), ("if", "next"))
            cases.append(Case(line=f.line, condition=f.text("if"), next=f.text("next")))
    return Branch(**common, cases=tuple(cases), otherwise=otherwise)


def _split(step: Fields, common: _Common) -> Split:
    f = step.mapping("split", SPLIT_KEYS, SPLIT_KEYS)
    branches = []
    for path, node in f.items_of("branches"):
        b = Fields(step.report, node, path, SPLIT_BRANCH_KEYS, SPLIT_BRANCH_KEYS)
        branches.append(
            SplitBranch(
                line=b.line,
                name=b.text("name"),
                weight=float(b.number("weight", 0.0)),
                next=b.text("next"),
            )
        )
    return Split(**common, seed=f.text("seed"), branches=tuple(branches))


def _send(step: Fields, common: _Common) -> Send:
    f = step.mapping("send", SEND_KEYS, ("channel", "template"))
    return Send(
        **common,
        channel=f.text("channel"),
        template=f.text("template"),
        category=f.optional_text("category"),
    )


def _update(step: Fields, common: _Common) -> UpdateProfile:
    f = step.mapping("update", UPDATE_KEYS)
    increment: dict[str, float] = {}
    node = f.node("increment")
    if isinstance(node, Map):
        for name, value in node.items.items():
            number = value.value if isinstance(value, Scalar) else None
            if isinstance(number, int | float) and not isinstance(number, bool):
                increment[name] = number
            else:
                f.report.add(
                    value.line,
                    f"{f.field('increment')}.{name}",
                    f"expected a number, got {describe(value)}",
                )
    elif node is not None:
        f.wrong("increment", "a mapping of trait names to numbers")
    return UpdateProfile(
        **common, set=f.any_map("set"), increment=increment, unset=f.texts("unset")
    )


def _webhook(step: Fields, common: _Common) -> Webhook:
    f = step.mapping("webhook", WEBHOOK_KEYS, ("url",))
    body = f.node("body")
    timeout = f.duration("timeout")
    return Webhook(
        **common,
        url=f.text("url"),
        method=f.text("method", "POST"),
        body=None if body is None else plain(body),
        headers=f.text_map("headers"),
        save=f.text_map("save"),
        timeout_ms=10_000 if timeout is None else timeout,
    )


def _emit(step: Fields, common: _Common) -> Emit:
    f = step.mapping("emit", EMIT_KEYS, ("event",))
    return Emit(**common, event=f.text("event"), properties=f.any_map("properties"))


def _exit(step: Fields, common: _Common) -> Exit:
    node = step.node("exit")
    if node is None or (isinstance(node, Scalar) and (node.value is True or node.value is None)):
        return Exit(**common)  # `exit: true`, or a step with no kind (already reported)
    if not isinstance(node, Map):
        step.wrong("exit", "true or a mapping with a reason")
        return Exit(**common)
    f = step.mapping("exit", EXIT_KEYS)
    return Exit(**common, reason=f.text("reason", "exit step"))


_KINDS: Final[dict[str, Callable[[Fields, _Common], AnyStep]]] = {
    "wait": _wait,
    "branch": _branch,
    "split": _split,
    "send": _send,
    "update": _update,
    "webhook": _webhook,
    "emit": _emit,
    "exit": _exit,
}
