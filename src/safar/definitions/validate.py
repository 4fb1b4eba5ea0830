"""Checks on a whole journey (or policy), whether it was read from YAML or built in Python.

:func:`validate_journey` returns problems instead of raising, so ``safar validate`` can list
everything wrong in every file. Step ids, targets, reachability, loops, stages, channels, cron
schedules, times of day, split weights and entry settings are checked here; templates and
conditions too when the caller says how (``templates``, ``conditions``), since those live outside
the journey file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Final

from safar.core.localtime import parse_hhmm
from safar.definitions.cron import CronError, parse_cron
from safar.definitions.graph import loops_without_wait, unreachable
from safar.definitions.problems import Problem, join
from safar.model.journeys import (
    EXIT,
    STAGES,
    AnyStep,
    Branch,
    Emit,
    Exit,
    Journey,
    Send,
    Split,
    UpdateProfile,
    Wait,
    Webhook,
)
from safar.model.messages import CHANNELS
from safar.model.policy import Policy

#: Checks a condition's source: an error message, or None when it compiles.
ConditionChecker = Callable[[str], str | None]

#: Template names, or template name -> its channel (None when unknown).
Templates = Collection[str] | Mapping[str, str | None] | None

#: Names a journey condition may use.
JOURNEY_NAMES: Final = frozenset({"event", "profile", "journey", "now"})
#: Names a suppression's ``where`` may use.
POLICY_NAMES: Final = frozenset({"profile", "now"})
#: Channels that render the template they are given (``null`` drops every message unread).
_TEMPLATED: Final = frozenset(CHANNELS) - {"null"}
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Letters (any script), digits, ``_``, ``-`` and ``.``; ids appear in URLs, keys and reports.
ID_PATTERN: Final = re.compile(r"[^\W][\w.-]{0,99}")
ID_HELP: Final = "use letters, digits, '_', '-' or '.' (at most 100), not starting with '-' or '.'"


def validate_journey(
    journey: Journey,
    *,
    templates: Templates = None,
    conditions: ConditionChecker | None = None,
    lines: Mapping[str, int] | None = None,
) -> list[Problem]:
    """Everything wrong with ``journey``, in line order; [] when it may be published.

    ``templates``: the template names that exist (None: not checked); a mapping of name to
    channel also checks that each send uses its template's channel. ``conditions``: checks
    one CEL source, see :func:`cel_checker` (None: not checked). ``lines``: field path -> line,
    from :func:`~safar.definitions.journeys.load_journey`, to point at the exact line of a field
    rather than the line of its step.
    """
    check = _Checker(journey, lines or {}, conditions)
    check.journey()
    check.entry()
    check.steps(templates)
    check.graph()
    return sorted(check.problems, key=lambda problem: problem.line)


def validate_policy(
    policy: Policy,
    *,
    conditions: ConditionChecker | None = None,
    origin: str | None = None,
    lines: Mapping[str, int] | None = None,
) -> list[Problem]:
    """What :func:`~safar.definitions.policy.parse_policy` cannot check alone: suppression
    conditions (with ``conditions``, names ``profile`` and ``now``)."""
    problems = []
    where_lines = lines or {}
    for index, rule in enumerate(policy.suppressions):
        field = f"suppressions[{index}].where"
        error = conditions(rule.where) if conditions is not None and rule.where else None
        if error is not None:
            line = where_lines.get(field, 0)
            problems.append(Problem(origin or "<policy>", line, field, f"bad condition: {error}"))
    return problems


def cel_checker(names: Collection[str] = JOURNEY_NAMES) -> ConditionChecker:
    """A condition checker that compiles with Safar's CEL (:mod:`safar.cel`) over ``names``."""
    from safar.cel import CelError, CelSyntaxError, compile_expression

    known = frozenset(names)

    def check(source: str) -> str | None:
        try:
            compile_expression(source, known)
        except CelSyntaxError as exc:
            # "line 1" would read as a line of the file: say where inside the condition instead.
            at = (
                f"column {exc.column}" if exc.line == 1 else f"line {exc.line}, column {exc.column}"
            )
            return f"{exc.reason} (at {at} of the condition)"
        except CelError as exc:
            return exc.reason
        return None

    return check


def line_of(lines: Mapping[str, int], field: str, fallback: int) -> int:
    """The line of ``field`` in ``lines`` (from :func:`~safar.definitions.yamlsource.line_map`);
    else of the closest enclosing field; else ``fallback``, the line of the node it belongs to."""
    path = field
    while path and path not in lines:
        path = _parent(path)
    line = lines.get(path, 0) if path else 0
    return line or fallback


def condition_problem(source: str | None, conditions: ConditionChecker | None) -> str | None:
    """What is wrong with the condition ``source`` (None: there is no condition), or None.
    Without ``conditions`` only emptiness is checked."""
    if source is None:
        return None
    if not source.strip():
        return "an empty condition"
    error = conditions(source) if conditions is not None else None
    return None if error is None else f"bad condition: {error}"


class _Checker:
    def __init__(
        self, journey: Journey, lines: Mapping[str, int], conditions: ConditionChecker | None
    ) -> None:
        self.j = journey
        self.file = journey.origin or "<journey>"
        self.lines = lines
        self.conditions = conditions
        self.problems: list[Problem] = []
        self.ids = {step.id for step in journey.steps}

    def add(self, field: str, fallback: int, message: str) -> None:
        line = line_of(self.lines, field, fallback)
        self.problems.append(Problem(self.file, line, field, message))

    def condition(self, field: str, line: int, source: str | None) -> None:
        error = condition_problem(source, self.conditions)
        if error is not None:
            self.add(field, line, error)

    def stage(self, field: str, line: int, stage: str | None) -> None:
        if stage is not None and stage not in STAGES:
            self.add(field, line, f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")

    def target(self, field: str, line: int, target: str) -> None:
        if target == EXIT or target in self.ids:
            return
        close = difflib.get_close_matches(target, sorted(self.ids), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        self.add(field, line, f"no step {target!r}{guess}; name a step id or 'exit'")

    def journey(self) -> None:
        j = self.j
        if not ID_PATTERN.fullmatch(j.id):
            self.add("id", 0, f"bad journey id {j.id!r}: {ID_HELP}")
        if not j.name.strip():
            self.add("name", 0, "must not be empty")
        self.stage("stage", 0, j.stage)
        if j.goal is not None:
            if not j.goal.event.strip():
                self.add("goal.event", j.goal.line, "must not be empty")
            if j.goal.within_ms is not None and j.goal.within_ms <= 0:
                self.add("goal.within", j.goal.line, "must be longer than 0s")
            self.condition("goal.where", j.goal.line, j.goal.where)
        if not j.policy.category.strip():
            self.add("policy.category", j.policy.line, "must not be empty")

    def entry(self) -> None:
        e = self.j.entry
        if e.event is None and e.segment is None and e.schedule is None and not e.api:
            self.add(
                "entry",
                e.line,
                "customers cannot enter: give an event, a segment, a schedule or api: true",
            )
        if e.event is not None and e.segment is not None:
            self.add(
                "entry.segment",
                e.line,
                "give an event or a segment, not both (a segment entry is its own event)",
            )
        self.condition("entry.where", e.line, e.where)
        if e.schedule is not None:
            try:
                parse_cron(e.schedule)
            except CronError as exc:
                self.add("entry.schedule", e.line, str(exc))
        if e.cooldown_ms < 0:
            self.add("entry.cooldown", e.line, "cannot be negative")
        elif e.cooldown_ms and e.reentry == "never":
            self.add(
                "entry.cooldown",
                e.line,
                "a cooldown needs reentry: after_exit or always (with never, nobody comes back)",
            )
        if e.max_active < 1:
            self.add("entry.max_active", e.line, "must be at least 1")
        elif e.max_active > 1 and e.reentry != "always":
            self.add(
                "entry.max_active",
                e.line,
                f"more than one active instance needs reentry: always, not {e.reentry}",
            )

    def steps(self, templates: Templates) -> None:
        if not self.j.steps:
            self.add("steps", 0, "a journey needs at least one step")
        first: dict[str, int] = {}
        for index, step in enumerate(self.j.steps):
            path = f"steps[{index}]"
            if step.id in first:
                self.add(
                    join(path, "id"),
                    step.line,
                    f"duplicate step id {step.id!r} (also steps[{first[step.id]}])",
                )
            else:
                first[step.id] = index
            if step.id == EXIT:
                self.add(join(path, "id"), step.line, "'exit' is reserved: it ends the journey")
            elif not ID_PATTERN.fullmatch(step.id):
                self.add(join(path, "id"), step.line, f"bad step id {step.id!r}: {ID_HELP}")
            self.stage(join(path, "stage"), step.line, step.stage)
            if step.next is not None:
                if isinstance(step, Branch | Split | Exit):
                    self.add(join(path, "next"), step.line, f"a {step_kind(step)} step has no next")
                else:
                    self.target(join(path, "next"), step.line, step.next)
            self.step(path, step, templates)

    def step(self, path: str, step: AnyStep, templates: Templates) -> None:
        line = step.line
        if isinstance(step, Wait):
            self.wait(join(path, "wait"), step)
        elif isinstance(step, Branch):
            at = join(path, "branch")
            if not step.cases:
                self.add(at, line, "a branch needs at least one case (- if: ... next: ...)")
            for index, case in enumerate(step.cases):
                self.condition(f"{at}[{index}].if", case.line, case.condition)
                self.target(f"{at}[{index}].next", case.line, case.next)
            self.target(f"{at}[{len(step.cases)}].else", line, step.otherwise)
        elif isinstance(step, Split):
            self.split(join(path, "split"), step)
        elif isinstance(step, Send):
            at = join(path, "send")
            if step.channel not in CHANNELS:
                known = ", ".join(CHANNELS)
                self.add(f"{at}.channel", line, f"unknown channel {step.channel!r}; use {known}")
            if not step.template.strip():
                self.add(f"{at}.template", line, "must not be empty")
            elif templates is not None and step.template not in templates:
                close = difflib.get_close_matches(step.template, sorted(templates), n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(f"{at}.template", line, f"no template {step.template!r}{guess}")
            elif isinstance(templates, Mapping):
                made_for = templates[step.template]
                if made_for and made_for != step.channel and step.channel in _TEMPLATED:
                    self.add(
                        f"{at}.template",
                        line,
                        f"template {step.template!r} is for {made_for}, not {step.channel}",
                    )
            if step.category is not None and not step.category.strip():
                self.add(f"{at}.category", line, "must not be empty")
        elif isinstance(step, UpdateProfile):
            if not (step.set or step.increment or step.unset):
                self.add(
                    join(path, "update"), line, "changes nothing: give set, increment or unset"
                )
        elif isinstance(step, Webhook):
            at = join(path, "webhook")
            if not step.url.startswith(("https://", "http://")):
                self.add(
                    f"{at}.url", line, f"expected an http:// or https:// URL, got {step.url!r}"
                )
            if step.method not in HTTP_METHODS:
                self.add(f"{at}.method", line, f"unknown method; use {', '.join(HTTP_METHODS)}")
            if step.timeout_ms <= 0:
                self.add(f"{at}.timeout", line, "must be longer than 0s")
        elif isinstance(step, Emit) and not step.event.strip():
            self.add(join(path, "emit.event"), line, "must not be empty")

    def wait(self, at: str, step: Wait) -> None:
        line = step.line
        given = [
            name
            for name, value in (
                ("for", step.duration_ms),
                ("until", step.until),
                ("event", step.event),
            )
            if value is not None
        ]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            self.add(at, line, f"a wait needs one of for, until or event; found {found}")
        if step.duration_ms is not None and step.duration_ms <= 0:
            self.add(f"{at}.for", line, "must be longer than 0s")
        if step.until is not None:
            try:
                parse_hhmm(step.until)
            except ValueError as exc:
                self.add(f"{at}.until", line, str(exc))
        if step.event is None:
            if step.timeout_ms is not None or step.timeout_next is not None:
                self.add(f"{at}.timeout", line, "a timeout belongs to a wait for an event")
            return
        if not step.event.event.strip():
            self.add(f"{at}.event", step.event.line or line, "must not be empty")
        self.condition(f"{at}.where", step.event.line or line, step.event.where)
        if step.timeout_ms is None or step.timeout_ms <= 0:
            self.add(f"{at}.timeout", line, "a wait for an event needs a timeout, e.g. timeout: 3d")
        if step.timeout_next is not None:
            self.target(f"{at}.timeout_next", line, step.timeout_next)

    def split(self, at: str, step: Split) -> None:
        if not step.seed.strip():
            self.add(f"{at}.seed", step.line, "must not be empty")
        if not step.branches:
            self.add(f"{at}.branches", step.line, "a split needs at least one branch")
            return
        names: set[str] = set()
        for index, branch in enumerate(step.branches):
            field = f"{at}.branches[{index}]"
            if branch.name in names:
                self.add(f"{field}.name", branch.line, f"duplicate branch name {branch.name!r}")
            names.add(branch.name)
            if not math.isfinite(branch.weight) or branch.weight < 0:
                self.add(f"{field}.weight", branch.line, "must be a number 0 or above")
            self.target(f"{field}.next", branch.line, branch.next)
        if all(branch.weight == 0 for branch in step.branches):
            self.add(f"{at}.branches", step.line, "all weights are 0: nobody would be assigned")

    def graph(self) -> None:
        steps = self.j.steps
        for index in unreachable(self.j):
            step = steps[index]
            self.add(
                f"steps[{index}]",
                step.line,
                f"step {step.id!r} is never reached from the first step {steps[0].id!r}",
            )
        for group in loops_without_wait(self.j):
            first = group[0]
            if len(group) == 1:
                what = f"step {steps[first].id!r} goes back to itself"
            else:
                what = "steps " + ", ".join(repr(steps[i].id) for i in group) + " form a loop"
            self.add(
                f"steps[{first}]",
                steps[first].line,
                f"{what} with no wait step in it: a customer would go round without pausing; "
                "add a wait",
            )


def step_kind(step: AnyStep) -> str:
    """The YAML key of a step's kind: ``wait``, ``send``, ..."""
    return str(type(step).__struct_config__.tag)


def _parent(path: str) -> str:
    """``steps[3].send`` for ``steps[3].send.template``, ``steps`` for ``steps[3]``."""
    cut = path.rfind("[") if path.endswith("]") else path.rfind(".")
    return path[: max(cut, 0)]
