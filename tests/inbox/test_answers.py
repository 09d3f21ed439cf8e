"""Canned answers (inbox/answers.py): the operator's answers.yaml, its errors with their lines,
and the placeholders filled in; ``meldpunt check-config`` and ``serve`` report a broken file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inbox.answers import AnswersError, CannedAnswers, compile_answers, placeholder_values
from meldpunt.cli import main
from meldpunt.config import load_answers
from meldpunt.yamlsource import load_yaml_text
from tests.conftest import free_port
from tests.service import SAMPLE, sample_config

GOOD = textwrap.dedent(
    """\
    answers:
      - id: afval-gemist
        title:
          nl: Afval niet opgehaald
          en: Waste not collected
        text:
          nl: |
            Beste {citizen_name}, uw melding {reference} ({subject}) ligt bij {department}.
            Groeten, {staff_name}, gemeente {town}. Haakjes: {{zo}}.
          en: "Dear {citizen_name}, about {reference}: done."
    """
)


def compiled(text: str) -> CannedAnswers:
    doc = load_yaml_text(text, "answers.yaml")
    return compile_answers(doc.data, file="answers.yaml", line_of=doc.line_of)


def problems_of(text: str) -> list[str]:
    with pytest.raises(AnswersError) as caught:
        compiled(text)
    return caught.value.problems


def values(language: str = "nl", name: str | None = "Mie Janssens") -> dict[str, str]:
    return placeholder_values(
        citizen_name=name,
        language=language,
        reference="1750-000042",
        subject="Kerkstraat",
        department="Milieu en afval",
        staff_name="An Peeters",
        town="Wingene",
    )


def test_an_answer_is_filled_in_with_the_tickets_values() -> None:
    [answer] = compiled(GOOD).items
    assert answer.title("nl") == "Afval niet opgehaald"
    assert answer.title("fr") == "Afval niet opgehaald"  # no French title: the first one
    assert answer.fill("nl", values()) == (
        "Beste Mie Janssens, uw melding 1750-000042 (Kerkstraat) ligt bij Milieu en afval.\n"
        "Groeten, An Peeters, gemeente Wingene. Haakjes: {zo}."
    )
    # The ticket's language when the answer has it, else the next one asked for, else its first.
    assert answer.language_for(["en", "nl"]) == "en"
    assert answer.language_for(["fr", "nl"]) == "nl"
    assert answer.language_for([None, "fr"]) == "nl"
    # A name with braces is written as it is; no name: a polite form of address.
    assert answer.fill("en", values("en", "{reference}")) == (
        "Dear {reference}, about 1750-000042: done."
    )
    assert answer.fill("en", values("en", None)).startswith("Dear Sir or Madam,")


def test_the_sample_answers_are_valid_and_use_known_placeholders() -> None:
    answers = load_answers(SAMPLE)
    assert len(answers) >= 3
    for answer in answers.items:
        assert set(answer.texts) == {"nl", "fr", "en"}
        for language in answer.texts:
            assert "{" not in answer.fill(language, values(language))


def test_no_file_means_no_answers(tmp_path: Path) -> None:
    assert load_answers(tmp_path) == CannedAnswers()
    (tmp_path / "answers.yaml").write_text("# nothing yet\n", encoding="utf-8")
    assert len(load_answers(tmp_path)) == 0


def test_every_problem_is_reported_with_its_line() -> None:
    problems = problems_of(
        textwrap.dedent(
            """\
            answers:
              - id: goed
                title: {nl: Goed}
                text: {nl: "Dag {citizen_name}"}
              - id: Slecht Id
                title: {nl: Titel}
                text:
                  nl: "Dag {naam}"
                  de: "Guten Tag"
                colour: green
              - id: goed
                title: Zonder taal
                text:
                  en: "Price: {reference:>10} and {"
            """
        )
    )
    assert problems == [
        "answers.yaml:10: answers.1.colour: unknown key 'colour' (known: id, title, text)",
        "answers.yaml:5: answers.1.id: use lower-case letters, digits, '-' or '_', "
        "e.g. 'afval-gemist'",
        "answers.yaml:8: answers.1.text.nl: unknown placeholder {naam} (known: {citizen_name}, "
        "{reference}, {subject}, {department}, {staff_name}, {town})",
        "answers.yaml:9: answers.1.text.de: unknown language 'de' (use nl, fr or en)",
        "answers.yaml:11: answers.2.id: the id 'goed' is used twice",
        "answers.yaml:12: answers.2.title: write it per language, e.g. 'nl: ...' (nl, fr or en)",
        "answers.yaml:14: answers.2.text.en: a lone '{' or '}' (Single '{' encountered in "
        "format string); write '{{' or '}}' for a brace itself",
    ]


def test_the_shape_of_the_file_is_checked() -> None:
    assert problems_of("- id: x\n") == [
        "answers.yaml:1: (top level): the file must be a mapping with one key, 'answers' (a list)"
    ]
    assert problems_of("answers: {id: x}\n") == [
        "answers.yaml:1: answers: must be a list of answers, each with id, title and text"
    ]
    assert problems_of("answers:\n  - {id: x, title: {nl: T}, text: {nl: '{0} {}'}}\n") == [
        "answers.yaml:2: answers.0.text.nl: unknown placeholder {0} (known: {citizen_name}, "
        "{reference}, {subject}, {department}, {staff_name}, {town})"
    ]
    assert problems_of("answers:\n  - {id: x, title: {nl: T}, text: {nl: '{town!r}'}}\n") == [
        "answers.yaml:2: answers.0.text.nl: write the placeholder {town} plainly, "
        "without ':' or '!'"
    ]


BROKEN = "answers:\n  - id: oeps\n    title: {nl: Oeps}\n    text:\n      nl: 'Dag {naam}'\n"


def test_check_config_reports_a_broken_answers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sample_config(tmp_path, "sqlite:///" + str(tmp_path / "m.db"), monkeypatch)
    assert main(["--config", str(config.config_file), "check-config"]) == 0
    shown = capsys.readouterr().out
    assert f"canned answers: {len(load_answers(SAMPLE))} in {config.folder / 'answers.yaml'}" in (
        shown
    )
    (config.folder / "answers.yaml").write_text(BROKEN, encoding="utf-8")
    assert main(["--config", str(config.config_file), "check-config"]) == 1
    error = capsys.readouterr().err
    assert "the configuration has errors:" in error
    where = config.folder / "answers.yaml"
    assert f"{where}:5: answers.0.text.nl: unknown placeholder {{naam}}" in error
    (config.folder / "answers.yaml").unlink()
    assert main(["--config", str(config.config_file), "check-config"]) == 0
    assert "canned answers: none (" in capsys.readouterr().out


def test_serve_refuses_to_start_with_a_broken_answers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = sample_config(tmp_path, "sqlite:///" + str(tmp_path / "m.db"), monkeypatch)
    (config.folder / "answers.yaml").write_text(BROKEN, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "meldpunt", "--config", str(config.config_file),
         "serve", "--port", str(free_port())],
        env=dict(os.environ), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "answers.yaml:5: answers.0.text.nl: unknown placeholder {naam}" in done.stderr
