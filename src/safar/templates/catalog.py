"""The templates of one directory, loaded and checked once: :class:`TemplateCatalog`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safar.templates.errors import Problem, TemplateError
from safar.templates.loader import load_file
from safar.templates.model import Template
from safar.templates.render import RenderedParts, render


class TemplateCatalog:
    """Templates by id, with the problems found while loading them.

    A template with problems is listed by :meth:`names` and reported by :meth:`check`, but
    :meth:`get` refuses it, so one broken file fails only the messages that use it.
    """

    def __init__(
        self,
        templates: Mapping[str, Template],
        problems: Mapping[str, Sequence[Problem]] | None = None,
        *,
        directory: str | None = None,
    ) -> None:
        self._templates = dict(templates)
        self._problems = {name: list(found) for name, found in (problems or {}).items() if found}
        self.directory = directory

    @classmethod
    def load(cls, directory: str | Path, *, strict: bool = False) -> TemplateCatalog:
        """Read every ``*.yaml`` file in ``directory`` (not recursive); the file name is the id.

        With ``strict``, raises :class:`TemplateError` listing every problem found instead.
        """
        root = Path(directory)
        templates: dict[str, Template] = {}
        problems: dict[str, list[Problem]] = {}
        if not root.is_dir():
            problems[""] = [Problem(file=str(root), line=1, field="", message="not a directory")]
        else:
            for path in sorted(root.iterdir()):
                if path.suffix == ".yml":
                    problems[path.stem] = [
                        Problem(
                            file=str(path),
                            line=1,
                            field="",
                            message="template files end in .yaml; rename it to be loaded",
                        )
                    ]
                elif path.suffix == ".yaml" and path.is_file():
                    template, found = load_file(path)
                    problems[path.stem] = found
                    if template is not None:
                        templates[path.stem] = template
        catalog = cls(templates, problems, directory=str(root))
        if strict and catalog.problems():
            found = catalog.problems()
            listing = "\n".join(f"  {problem}" for problem in found)
            raise TemplateError(f"{len(found)} problem(s) in templates:\n{listing}", problems=found)
        return catalog

    def names(self) -> list[str]:
        """Ids of every template file found, including ones with problems, sorted."""
        return sorted((self._templates.keys() | self._problems.keys()) - {""})

    def get(self, template_id: str) -> Template:
        """The template ``template_id``; raises :class:`TemplateError` when it is unknown or
        has problems."""
        template = self._templates.get(template_id)
        if template is None:
            problems = self._problems.get(template_id, [])
            reason = (
                "has problems: " + "; ".join(str(problem) for problem in problems)
                if problems
                else f"does not exist{self._where(template_id)}"
            )
            raise TemplateError(reason, template_id=template_id, problems=problems)
        return template

    def check(self, template_id: str) -> list[str]:
        """What is wrong with ``template_id``, one readable line each; empty when it is fine."""
        if template_id in self._problems:
            return [str(problem) for problem in self._problems[template_id]]
        if template_id not in self._templates:
            return [f"template {template_id!r} does not exist{self._where(template_id)}"]
        return []

    def problems(self) -> list[Problem]:
        """Every problem found while loading, by file then line."""
        found = [problem for problems in self._problems.values() for problem in problems]
        return sorted(found, key=lambda problem: (problem.file, problem.line, problem.field))

    def render(
        self,
        template_id: str,
        *,
        profile: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
        journey: Mapping[str, Any] | None = None,
        locale: str | None = None,
        strict: bool = False,
    ) -> RenderedParts:
        """:func:`safar.templates.render` of the template ``template_id``."""
        return render(
            self.get(template_id),
            profile=profile,
            event=event,
            journey=journey,
            locale=locale,
            strict=strict,
        )

    def _where(self, template_id: str) -> str:
        return "" if self.directory is None else f" (no {self.directory}/{template_id}.yaml)"


def validate_directory(path: str | Path) -> list[Problem]:
    """Every problem in the templates of ``path``: file, line, field and message each."""
    return TemplateCatalog.load(path).problems()
