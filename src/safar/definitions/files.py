"""``safar validate``: check journey, policy, segment and computed-trait files, and directories
of them.

Each path is a file or a directory walked for ``*.yaml`` / ``*.yml`` (hidden directories and
``templates/`` directories are not walked). A YAML file is a *journey* when its top level has
``steps`` or ``entry``, a *policy* when it is named ``policy.yaml`` (``.yml``) or its top level
has policy keys (``quiet_hours``, ``frequency_caps``, ...), a *computed trait* when it has
``compute`` and a *segment* when it has ``where``. Other YAML files met while walking a directory
are left alone; named on their own, they are a problem. Segments and computed traits are also
checked together, once every file is read: ids shared between them, ``member:`` references
across files, cycles.

Templates (``<id>.yaml`` files, see :mod:`safar.templates`) for ``send`` steps come from
``templates_dir``, else from ``templates/`` beside the
journey's directory (``<journeys dir>/../templates``), else from ``<journeys dir>/templates``;
with none of these, templates are not checked. Conditions are compiled with :mod:`safar.cel`, and
template directories validated with :mod:`safar.templates`, when those are installed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from safar.definitions.audiences import (
    Audience,
    audience_from_node,
    audience_kind,
    validate_audiences,
)
from safar.definitions.journeys import journey_from_node
from safar.definitions.policy import POLICY_FILE_KEYS, policy_from_node
from safar.definitions.problems import DefinitionError, Problem
from safar.definitions.validate import (
    JOURNEY_NAMES,
    POLICY_NAMES,
    ConditionChecker,
    cel_checker,
    validate_journey,
    validate_policy,
)
from safar.definitions.yamlsource import Map, Node, Scalar, line_map, load
from safar.model.audiences import Segment

YAML_SUFFIXES: Final = (".yaml", ".yml")
POLICY_FILE_NAMES: Final = ("policy.yaml", "policy.yml")
TEMPLATES_DIR_NAME: Final = "templates"
_JOURNEY_MARKERS: Final = frozenset({"steps", "entry"})
_NOT_A_DEFINITION: Final = (
    "neither a journey (no 'steps'), a segment (no 'where'), a computed trait (no 'compute') "
    "nor a policy file"
)


def validate_paths(paths: Sequence[Path], templates_dir: Path | None = None) -> list[Problem]:
    """Every problem in the definition files at ``paths``, file by file in line order, then
    what is wrong across segments and computed traits; [] when all is well."""
    run = _Run(templates_dir)
    for path in paths:
        if path.is_dir():
            for file in _walk(path):
                run.file(file, named=False)
            beside = path / TEMPLATES_DIR_NAME
            if beside.is_dir():
                run.template_dirs.setdefault(beside.resolve(), beside)
        elif path.is_file():
            run.file(path, named=True)
        else:
            run.problems.append(Problem(str(path), 0, "", "no such file or directory"))
    run.check_audiences()
    run.check_templates()
    return run.problems


def _walk(directory: Path) -> list[Path]:
    found = []
    for base, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != TEMPLATES_DIR_NAME)
        found += [Path(base, name) for name in sorted(files) if name.endswith(YAML_SUFFIXES)]
    return found


def _kind(file: Path, root: Node) -> str | None:
    if file.name in POLICY_FILE_NAMES:
        return "policy"
    if not isinstance(root, Map):
        return None
    if _JOURNEY_MARKERS & root.items.keys():
        return "journey"
    if root.items.keys() & set(POLICY_FILE_KEYS):
        return "policy"
    return audience_kind(root)


class _Run:
    def __init__(self, templates_dir: Path | None) -> None:
        self.templates_dir = templates_dir
        self.problems: list[Problem] = []
        #: Template directories to validate: resolved path -> the path as met, for messages.
        self.template_dirs: dict[Path, Path] = {}
        self.catalogs: dict[Path, Mapping[str, str | None]] = {}
        self.journey_ids: dict[str, str] = {}
        #: (file, line, field, segment id) of every segment a journey or policy names.
        self.segment_refs: list[tuple[str, int, str, str]] = []
        self.seen: set[Path] = set()
        self.policy_file: str | None = None
        self.audiences: list[Audience] = []
        self.audience_lines: dict[str, dict[str, int]] = {}
        #: Ids of segments with problems of their own: other segments may still name them.
        self.unreadable_segments: set[str] = set()
        try:
            self.journey_conditions: ConditionChecker | None = cel_checker(JOURNEY_NAMES)
            self.policy_conditions: ConditionChecker | None = cel_checker(POLICY_NAMES)
        except ImportError:  # safar.cel not installed: conditions are checked when published
            self.journey_conditions = self.policy_conditions = None

    def file(self, file: Path, *, named: bool) -> None:
        if file.resolve() in self.seen:
            return
        self.seen.add(file.resolve())
        found = self.check(file, named=named)
        self.problems += sorted(found, key=lambda problem: problem.line)

    def check(self, file: Path, *, named: bool) -> list[Problem]:
        name = str(file)
        try:
            root = load(file.read_text(encoding="utf-8"), name)
        except DefinitionError as exc:
            return exc.problems
        except (OSError, UnicodeDecodeError) as exc:
            return [Problem(name, 0, "", f"cannot read the file: {exc}")]
        kind = _kind(file, root)
        if kind is None:
            if not named:
                return []  # e.g. a CI or docs configuration file
            return [Problem(name, 1, "", _NOT_A_DEFINITION)]
        found = []
        if kind == "policy":
            if self.policy_file is not None:
                message = f"a second policy file; {self.policy_file} is the policy"
                found.append(Problem(name, 1, "", message))
            self.policy_file = self.policy_file or name
        try:
            if kind == "journey":
                found += self.journey(file, root)
            elif kind == "policy":
                found += self.policy(file, root)
            else:
                self.audiences.append(audience_from_node(root, name))
                self.audience_lines[name] = line_map(root)
        except DefinitionError as exc:
            found += exc.problems
            if kind == "segment" and isinstance(root, Map):
                given = root.items.get("id")
                if isinstance(given, Scalar) and isinstance(given.value, str):
                    self.unreadable_segments.add(given.value)
        return found

    def journey(self, file: Path, root: Node) -> list[Problem]:
        name = str(file)
        journey = journey_from_node(root, name)
        lines = line_map(root)
        found = validate_journey(
            journey,
            templates=self.templates(file.parent),
            conditions=self.journey_conditions,
            lines=lines,
        )
        if journey.entry.segment is not None:
            self.segment_refs.append(
                (
                    name,
                    lines.get("entry.segment", journey.entry.line),
                    "entry.segment",
                    journey.entry.segment,
                )
            )
        other = self.journey_ids.setdefault(journey.id, name)
        if other != name:
            message = f"journey id {journey.id!r} is also {other}'s"
            found.append(Problem(name, lines.get("id", 0), "id", message))
        return found

    def policy(self, file: Path, root: Node) -> list[Problem]:
        name = str(file)
        policy = policy_from_node(root, name)
        lines = line_map(root)
        for index, rule in enumerate(policy.suppressions):
            if rule.segment is not None:
                field = f"suppressions[{index}].segment"
                self.segment_refs.append((name, lines.get(field, 0), field, rule.segment))
        return validate_policy(
            policy, conditions=self.policy_conditions, origin=name, lines=line_map(root)
        )

    def check_audiences(self) -> None:
        """What needs every segment and computed trait read (each file's own problems are
        already reported)."""
        self.problems += validate_audiences(
            self.audiences, self.audience_lines, known_segments=self.unreadable_segments
        )
        # Journeys and policies naming segments are checked against the segments given, when
        # any were (else they may be published already, from elsewhere).
        found = {a.id for a in self.audiences if isinstance(a, Segment)}
        found |= self.unreadable_segments
        if not found:
            return
        for file, line, field, segment in self.segment_refs:
            if segment not in found:
                hint = difflib.get_close_matches(segment, sorted(found), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                message = f"no segment {segment!r} among the files given{suggestion}"
                self.problems.append(Problem(file, line, field, message))

    def templates(self, journeys_dir: Path) -> Mapping[str, str | None] | None:
        """Template name -> channel for journeys in ``journeys_dir``; None when there is no
        templates directory to check against."""
        if self.templates_dir is not None:
            candidates = [self.templates_dir]
        else:
            candidates = [
                journeys_dir.parent / TEMPLATES_DIR_NAME,
                journeys_dir / TEMPLATES_DIR_NAME,
            ]
        directory = next((c for c in candidates if c.is_dir()), None)
        if directory is None:
            return None
        key = directory.resolve()
        if key not in self.catalogs:
            self.catalogs[key] = _template_channels(directory)
            self.template_dirs.setdefault(key, directory)
        return self.catalogs[key]

    def check_templates(self) -> None:
        from safar.templates import validate_directory  # Liquid is loaded only to validate

        for _, directory in sorted(self.template_dirs.items()):
            self.problems += [
                Problem(p.file, p.line, p.field, p.message) for p in validate_directory(directory)
            ]


def _template_channels(directory: Path) -> dict[str, str | None]:
    from safar.templates import TemplateCatalog, TemplateError

    catalog = TemplateCatalog.load(directory)
    channels: dict[str, str | None] = {}
    for name in catalog.names():
        try:
            channels[name] = catalog.get(name).channel
        except TemplateError:  # reported by check_templates
            channels[name] = None
    return channels
