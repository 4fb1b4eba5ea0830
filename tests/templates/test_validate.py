"""Validation: every problem names its file, line and field; broken templates are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.templates import Problem, TemplateCatalog, TemplateError, validate_directory
from tests.templates.conftest import WriteTemplate


def found(directory: Path) -> list[tuple[int, str, str]]:
    return [(p.line, p.field, p.message) for p in validate_directory(directory)]


def test_a_liquid_syntax_error_is_reported_at_its_line(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    path = write_template(
        "welcome.yaml",
        """
        id: welcome
        channel: email
        locales:
          en:
            subject: Welcome
            html: "<p>Welcome</p>"
          fa:
            subject: خوش آمدید
            html: |
              <p>سلام {{ profile.traits.first_name }}</p>
              <p>به فروشگاه خوش آمدید</p>
              {% frobnicate %}
        """,
    )
    problems = validate_directory(tmp_path)
    assert problems == [
        Problem(
            file=str(path),
            line=12,
            field="locales.fa.html",
            message="Liquid syntax error: unexpected tag 'frobnicate'",
        )
    ]
    assert str(problems[0]) == (
        f"{path}:12: locales.fa.html: Liquid syntax error: unexpected tag 'frobnicate'"
    )


def test_unknown_variables_and_filters_are_reported_at_their_lines(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    write_template(
        "sms.yaml",
        """
        channel: sms
        locales:
          en:
            text: |
              Hi {{ profile.traits.first_name }},
              {% assign total = event.properties.total %}{{ total | money: "EUR" }}
              your code is {{ user.code }}
              {{ event.properties.total | monee: "EUR" }}
        """,
    )
    assert found(tmp_path) == [
        (
            7,
            "locales.en.text",
            "unknown variable 'user' (templates see direction, event, journey, locale, profile)",
        ),
        (8, "locales.en.text", "unknown filter 'monee'"),
    ]


def test_include_and_render_are_refused(write_template: WriteTemplate, tmp_path: Path) -> None:
    write_template(
        "inc.yaml",
        """
        channel: sms
        locales:
          en: {text: "{% include '/etc/passwd' %}"}
          fa: {text: "{% render 'secrets' %}"}
        """,
    )
    messages = [message for _, _, message in found(tmp_path)]
    assert len(messages) == 2
    assert all("sandboxed and cannot read other files" in message for message in messages)


def test_structure_problems(write_template: WriteTemplate, tmp_path: Path) -> None:
    write_template(
        "promo.yaml",
        """
        id: promotion
        channel: email
        default_locale: en
        colour: blue
        locales:
          en:
            subject: Sale
            htm: "<p>typo</p>"
          fa-IR:
            subject: حراج
            html: "<p>حراج</p>"
          xx:
            subject: "?"
            html: "?"
        """,
    )
    write_template(
        "fax.yaml",
        """
        channel: fax
        locales:
          en: {text: hi}
        """,
    )
    write_template(
        "nolocale.yaml",
        """
        channel: sms
        default_locale: fa
        locales:
          en: {text: hi, text: again}
        """,
    )
    assert found(tmp_path) == [
        (1, "channel", "unknown channel 'fax' (one of email, sms, in_app, webhook, console)"),
        (2, "default_locale", "'fa' has no variant under locales"),
        (4, "locales.en.text", "given twice (first on line 4)"),
        (1, "id", "'promotion' does not match the file name (expected 'promo')"),
        (
            4,
            "colour",
            "unknown field (expected one of id, channel, default_locale, description, locales)",
        ),
        (7, "locales.en.html", "missing: email templates need html"),
        (8, "locales.en.htm", "not a field of email templates (html, subject, text)"),
        (9, "locales.fa-IR", "unknown locale code 'fa-IR' (write the language code 'fa')"),
        (12, "locales.xx", "unknown locale code 'xx' (ISO 639-1 codes)"),
    ]


def test_files_that_are_not_templates(write_template: WriteTemplate, tmp_path: Path) -> None:
    write_template("broken.yaml", "channel: sms\nlocales:\n  en: {text: [unclosed\n")
    write_template("empty.yaml", "")
    write_template("list.yaml", "- a\n- b\n")
    write_template("old.yml", "channel: sms\n")
    messages = {Path(p.file).name: (p.line, p.message) for p in validate_directory(tmp_path)}
    assert messages["broken.yaml"][1].startswith("not valid YAML")
    assert messages["broken.yaml"][0] == 4
    assert messages["empty.yaml"] == (1, "the file is empty: a template needs channel and locales")
    assert messages["list.yaml"] == (1, "the file must be a mapping of names to values")
    assert messages["old.yml"] == (1, "template files end in .yaml; rename it to be loaded")


def test_a_missing_directory_is_a_problem(tmp_path: Path) -> None:
    assert found(tmp_path / "nope") == [(1, "", "not a directory")]


def test_the_catalog_lists_broken_templates_but_refuses_them(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    write_template("good.yaml", "channel: sms\nlocales:\n  en: {text: hi}\n")
    write_template("bad.yaml", "channel: sms\nlocales:\n  en: {text: '{{ x'}\n")
    catalog = TemplateCatalog.load(tmp_path)
    assert catalog.names() == ["bad", "good"]
    assert catalog.check("good") == []
    assert catalog.get("good").channel == "sms"
    [problem] = catalog.check("bad")
    assert problem.startswith(f"{tmp_path / 'bad.yaml'}:3: locales.en.text: Liquid syntax error")
    with pytest.raises(TemplateError) as caught:
        catalog.get("bad")
    assert caught.value.template_id == "bad" and len(caught.value.problems) == 1
    assert catalog.check("missing") == [
        f"template 'missing' does not exist (no {tmp_path}/missing.yaml)"
    ]
    with pytest.raises(TemplateError, match="does not exist"):
        catalog.render("missing", profile={"id": "p"})


def test_strict_loading_raises_with_every_problem(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    write_template("a.yaml", "channel: sms\nlocales:\n  en: {}\n")
    write_template("b.yaml", "channel: nope\nlocales:\n  en: {text: hi}\n")
    with pytest.raises(TemplateError) as caught:
        TemplateCatalog.load(tmp_path, strict=True)
    assert len(caught.value.problems) == 2
    assert "2 problem(s) in templates" in caught.value.message
