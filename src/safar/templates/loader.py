"""Read one template file into a :class:`Template`, reporting every problem with its file, line
and field. The YAML is composed into nodes (not loaded straight into dicts) so that each field
keeps its line number."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from safar.templates.errors import Problem
from safar.templates.locales import LANGUAGES, normalize_locale
from safar.templates.model import CHANNEL_FIELDS, HTML_FIELDS, Template, Variant
from safar.templates.sandbox import liquid_problems

_TOP_FIELDS: Final = ("id", "channel", "default_locale", "description", "locales")
_NULL: Final = "tag:yaml.org,2002:null"


def load_file(path: Path) -> tuple[Template | None, list[Problem]]:
    """The template in ``path`` and the problems found; the template is None when any is."""
    reader = _Reader(str(path))
    template = reader.read(path)
    return (template if not reader.problems else None), reader.problems


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, node: Node | None, field: str, message: str, line: int | None = None) -> None:
        if line is None:
            line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(Problem(file=self.file, line=line, field=field, message=message))

    def read(self, path: Path) -> Template | None:
        try:
            # utf-8-sig: editors on Windows save Persian and Arabic files with a BOM.
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(None, "", f"cannot read the file: {exc}")
            return None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            detail = getattr(exc, "problem", None) or str(exc)
            self.problem(None, "", f"not valid YAML: {detail}", line=line)
            return None
        if root is None:
            self.problem(None, "", "the file is empty: a template needs channel and locales")
            return None
        top = self.mapping(root, "", what="the file")
        if top is None:
            return None
        for name, (key, _) in top.items():
            if name not in _TOP_FIELDS:
                self.problem(key, name, f"unknown field (expected one of {', '.join(_TOP_FIELDS)})")
        template_id = self.template_id(path, top)
        channel = self.channel(top)
        default_locale = self.default_locale(top)
        description = (
            self.string(top["description"][1], "description") if "description" in top else None
        )
        locales = self.locales(top, root, channel, default_locale)
        if template_id is None or channel is None or default_locale is None or locales is None:
            return None
        return Template(
            id=template_id,
            channel=channel,
            default_locale=default_locale,
            locales=locales,
            description=description,
            file=self.file,
        )

    def template_id(self, path: Path, top: dict[str, tuple[ScalarNode, Node]]) -> str | None:
        if "id" not in top:
            return path.stem
        value = self.string(top["id"][1], "id")
        if value is not None and value != path.stem:
            self.problem(
                top["id"][1],
                "id",
                f"{value!r} does not match the file name (expected {path.stem!r})",
            )
        return value

    def channel(self, top: dict[str, tuple[ScalarNode, Node]]) -> str | None:
        channels = ", ".join(CHANNEL_FIELDS)
        if "channel" not in top:
            self.problem(None, "channel", f"missing (one of {channels})")
            return None
        value = self.string(top["channel"][1], "channel")
        if value is not None and value not in CHANNEL_FIELDS:
            self.problem(
                top["channel"][1], "channel", f"unknown channel {value!r} (one of {channels})"
            )
            return None
        return value

    def default_locale(self, top: dict[str, tuple[ScalarNode, Node]]) -> str | None:
        if "default_locale" not in top:
            return "en"
        node = top["default_locale"][1]
        value = self.string(node, "default_locale")
        return self.locale_code(node, "default_locale", value) if value is not None else None

    def locale_code(self, node: Node, field: str, value: str) -> str | None:
        if value in LANGUAGES:
            return value
        language = normalize_locale(value)
        hint = f" (write the language code {language!r})" if language else " (ISO 639-1 codes)"
        self.problem(node, field, f"unknown locale code {value!r}{hint}")
        return None

    def locales(
        self,
        top: dict[str, tuple[ScalarNode, Node]],
        root: Node,
        channel: str | None,
        default_locale: str | None,
    ) -> dict[str, Variant] | None:
        if "locales" not in top:
            self.problem(root, "locales", "missing: give at least the default locale's variant")
            return None
        node = top["locales"][1]
        entries = self.mapping(node, "locales", what="locales")
        if entries is None:
            return None
        variants: dict[str, Variant] = {}
        for code, (key, value) in entries.items():
            locale = self.locale_code(key, f"locales.{code}", code)
            variant = self.variant(value, f"locales.{code}", locale or code, channel)
            if locale is not None and variant is not None:
                variants[locale] = variant
        if default_locale is not None and default_locale not in entries:
            where = top.get("default_locale", (None, node))[1]
            self.problem(
                where, "default_locale", f"{default_locale!r} has no variant under locales"
            )
        return variants

    def variant(self, node: Node, field: str, locale: str, channel: str | None) -> Variant | None:
        entries = self.mapping(node, field, what="a locale variant")
        if entries is None or channel is None:
            return None
        required, optional = CHANNEL_FIELDS[channel]
        fields: dict[str, str] = {}
        data: dict[str, Any] | None = None
        for name, (key, value) in entries.items():
            path = f"{field}.{name}"
            if name not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                self.problem(key, path, f"not a field of {channel} templates ({allowed})")
            elif name == "data":
                data = self.data(value, path)
            else:
                source = self.string(value, path)
                if source is not None:
                    self.check_liquid(value, path, source, html=name in HTML_FIELDS)
                    fields[name] = source
        for name in sorted(required - entries.keys()):
            self.problem(node, f"{field}.{name}", f"missing: {channel} templates need {name}")
        return Variant(locale=locale, fields=fields, data=data)

    def data(self, node: Node, field: str) -> dict[str, Any] | None:
        if self.mapping(node, field, what="data") is None:
            return None
        self.check_data(node, field)
        value = SafeConstructor().construct_document(node)
        return value if isinstance(value, dict) else None

    def check_data(self, node: Node, field: str) -> None:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                self.check_data(value, f"{field}.{key.value}")
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.check_data(item, f"{field}[{index}]")
        elif isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:str":
            self.check_liquid(node, field, node.value, html=False)

    def check_liquid(self, node: Node, field: str, source: str, *, html: bool) -> None:
        # Block scalars (| and >) start on the line after their indicator.
        first = node.start_mark.line + (1 if getattr(node, "style", None) in ("|", ">") else 0)
        for line, message in liquid_problems(source, html=html):
            self.problem(node, field, message, line=first + line)

    def mapping(
        self, node: Node, field: str, *, what: str
    ) -> dict[str, tuple[ScalarNode, Node]] | None:
        if not isinstance(node, MappingNode):
            self.problem(node, field, f"{what} must be a mapping of names to values")
            return None
        entries: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.problem(key, field, "keys must be plain names")
                continue
            path = f"{field}.{key.value}" if field else key.value
            if key.value in entries:
                first = entries[key.value][0].start_mark.line + 1
                self.problem(key, path, f"given twice (first on line {first})")
            entries[key.value] = (key, value)
        return entries

    def string(self, node: Node, field: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == _NULL or node.value == "":
            self.problem(node, field, "must be a non-empty string")
            return None
        return str(node.value)
