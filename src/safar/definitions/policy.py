"""The policy file, ``policy.yaml``: YAML text to a :class:`~safar.model.policy.Policy`.

Every rule is checked here except suppression conditions, which need the CEL compiler
(:func:`safar.definitions.validate.validate_policy`). The format is documented in
``docs/policy.md``.
"""

from __future__ import annotations

import zoneinfo
from typing import Final

from safar.core.localtime import parse_hhmm
from safar.definitions.fields import Fields, Report
from safar.definitions.problems import DefinitionError
from safar.definitions.yamlsource import Node, Scalar, Seq, line_map, load
from safar.model.messages import CHANNELS
from safar.model.policy import FrequencyCap, Policy, QuietHours, Suppression

#: The policy in force when there is no policy file.
DEFAULT_POLICY: Final = Policy()

POLICY_FILE_KEYS: Final = (
    "default_timezone",
    "quiet_hours",
    "frequency_caps",
    "suppressions",
    "priority_window",
    "transactional_categories",
)
QUIET_HOURS_KEYS: Final = ("start", "end", "max_delay")
CAP_KEYS: Final = ("id", "max", "per", "category", "channel")
SUPPRESSION_KEYS: Final = (
    "id", "categories", "channels", "segment", "where", "event", "within", "after_event",
    "until_event",
)  # fmt: skip

_ORIGIN: Final = "<policy>"
#: The ways a suppression can say when it holds; exactly one per rule.
_FORMS: Final = (("segment",), ("where",), ("event", "within"), ("after_event", "until_event"))
#: The keys each form cannot do without (``within`` is optional: without it, any such event ever).
_NEEDS: Final = {
    "segment": ("segment",),
    "where": ("where",),
    "event": ("event",),
    "after_event": _FORMS[3],
}
_FORMS_HELP: Final = (
    "give segment, or where, or event (and within), or after_event with until_event"
)


def parse_policy(text: str, origin: str | None = None) -> Policy:
    """Read a policy file; an empty file is :data:`DEFAULT_POLICY`. Raises
    :class:`DefinitionError` listing every problem found, each with its file, line and field."""
    return load_policy(text, origin)[0]


def load_policy(text: str, origin: str | None = None) -> tuple[Policy, dict[str, int]]:
    """Like :func:`parse_policy`, also returning the line of every field path."""
    root = load(text, origin or _ORIGIN)
    return policy_from_node(root, origin), line_map(root)


def policy_from_node(root: Node, origin: str | None = None) -> Policy:
    """The policy in an already loaded YAML document; raises :class:`DefinitionError`."""
    report = Report(origin or _ORIGIN)
    if isinstance(root, Scalar) and root.value is None:
        return DEFAULT_POLICY
    f = Fields(report, root, "", POLICY_FILE_KEYS)
    timezone = f.text("default_timezone", DEFAULT_POLICY.default_timezone)
    if not _known_zone(timezone):
        f.problem(
            "default_timezone",
            f"unknown timezone {timezone!r}; use an IANA name such as Asia/Tehran or UTC",
        )
    window = f.duration("priority_window")
    policy = Policy(
        default_timezone=timezone,
        quiet_hours=_quiet_hours(f),
        frequency_caps=_caps(f),
        suppressions=_suppressions(f),
        priority_window_ms=0 if window is None else window,
        transactional_categories=f.texts(
            "transactional_categories", DEFAULT_POLICY.transactional_categories
        ),
    )
    if report.problems:
        raise DefinitionError(report.problems)
    return policy


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # bad key, unknown zone, a directory such as "Asia"
        return False
    return True


def _time_of_day(f: Fields, key: str, default: str) -> str:
    text = f.text(key, default)
    try:
        parse_hhmm(text)
    except ValueError as exc:
        f.problem(key, str(exc))
    return text


def _quiet_hours(top: Fields) -> QuietHours | None:
    node = top.node("quiet_hours")
    if node is None:
        return DEFAULT_POLICY.quiet_hours
    if isinstance(node, Scalar) and (node.value is None or node.value is False):
        return None
    f = top.mapping("quiet_hours", QUIET_HOURS_KEYS)
    if not f.is_map:
        return None
    default = QuietHours()
    start = _time_of_day(f, "start", default.start)
    end = _time_of_day(f, "end", default.end)
    if start == end:
        f.problem(
            "end", "start and end are the same; to turn quiet hours off write quiet_hours: false"
        )
    max_delay = f.duration("max_delay")
    return QuietHours(
        start=start, end=end, max_delay_ms=default.max_delay_ms if max_delay is None else max_delay
    )


def _channel(f: Fields, key: str, channel: str | None) -> None:
    if channel is not None and channel not in CHANNELS:
        f.problem(key, f"unknown channel {channel!r}; use {', '.join(CHANNELS)}")


def _caps(top: Fields) -> tuple[FrequencyCap, ...]:
    caps = []
    ids: set[str] = set()
    for path, node in top.items_of("frequency_caps"):
        f = Fields(top.report, node, path, CAP_KEYS, ("id", "max", "per"))
        per = f.duration("per")
        cap = FrequencyCap(
            id=f.text("id"),
            max=f.integer("max", 1),
            window_ms=per or 0,
            category=f.optional_text("category"),
            channel=f.optional_text("channel"),
        )
        if cap.id and cap.id in ids:
            f.problem("id", f"duplicate frequency cap id {cap.id!r}")
        ids.add(cap.id)
        if cap.max < 1:
            f.problem("max", "must be at least 1; to stop messages altogether use a suppression")
        if per == 0:
            f.problem("per", "must be longer than 0s")
        _channel(f, "channel", cap.channel)
        caps.append(cap)
    return tuple(caps)


def _suppressions(top: Fields) -> tuple[Suppression, ...]:
    rules = []
    ids: set[str] = set()
    for path, node in top.items_of("suppressions"):
        f = Fields(top.report, node, path, SUPPRESSION_KEYS, ("id",))
        forms = [form for form in _FORMS if any(key in f for key in form)]
        if f.is_map and len(forms) != 1:
            given = " and ".join("+".join(form) for form in forms) if forms else "none"
            top.report.add(
                f.line, path, f"a suppression says when it holds: {_FORMS_HELP}; found {given}"
            )
        if len(forms) == 1:
            for key in _NEEDS[forms[0][0]]:
                if key not in f:
                    other = " and ".join(k for k in forms[0] if k != key)
                    f.problem(key, f"required with {other}")
        rule = Suppression(
            id=f.text("id"),
            categories=f.texts("categories", ("marketing",)),
            channels=f.texts("channels"),
            segment=f.optional_text("segment"),
            where=f.optional_text("where"),
            event=f.optional_text("event"),
            within_ms=f.duration("within"),
            after_event=f.optional_text("after_event"),
            until_event=f.optional_text("until_event"),
        )
        if rule.id and rule.id in ids:
            f.problem("id", f"duplicate suppression id {rule.id!r}")
        ids.add(rule.id)
        categories = f.node("categories")
        if isinstance(categories, Seq) and not categories.items:
            f.problem("categories", "an empty list suppresses nothing")
        if rule.within_ms == 0:
            f.problem("within", "must be longer than 0s")
        for channel in rule.channels:
            _channel(f, "channels", channel)
        rules.append(rule)
    return tuple(rules)
