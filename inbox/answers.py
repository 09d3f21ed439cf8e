"""Canned answers: texts operators write once in ``config/answers.yaml`` for staff to start from.

Each answer has an id, a title and a text per language (nl, fr, en) with placeholders such as
``{citizen_name}`` or ``{reference}``, filled in for the ticket at hand. The file is optional; a
broken one is reported whole, every problem with its file and line, like the routing rules.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The main file's folder holds it, next to meldpunt.yaml.
ANSWERS_FILE = "answers.yaml"
LANGUAGES = ("nl", "fr", "en")

# What a placeholder may name, and what it becomes.
PLACEHOLDERS: Mapping[str, str] = {
    "citizen_name": "the citizen's name (or a polite form of address when unknown)",
    "reference": "the ticket's reference number",
    "subject": "the ticket's subject",
    "department": "the name of the ticket's department",
    "staff_name": "the name of the staff member who answers",
    "town": "the town's name",
}
# When the citizen gave no name: "Beste {citizen_name}," still reads well.
NO_NAME = {"nl": "mevrouw, meneer", "fr": "Madame, Monsieur", "en": "Sir or Madam"}

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KEYS = ("id", "title", "text")
LineOf = Callable[[Sequence[str | int]], int | None]


class AnswersError(Exception):
    """The answers file is broken; ``problems`` lists each as ``file:line: path: text``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CannedAnswer:
    """One answer: its title and text by language, placeholders still in the text."""

    id: str
    titles: Mapping[str, str]
    texts: Mapping[str, str]

    def title(self, language: str) -> str:
        return _pick(self.titles, language)

    def language_for(self, wanted: Sequence[str | None]) -> str:
        """The first of ``wanted`` this answer is written in, else the first it has."""
        for language in wanted:
            if language is not None and language in self.texts:
                return language
        return next(iter(self.texts))

    def fill(self, language: str, values: Mapping[str, str]) -> str:
        """The text in ``language`` with every placeholder replaced by its value."""
        text = self.texts[language]
        # format_map never reads braces inside the values: a name with "{" stays as written.
        return text.format_map({name: values.get(name, "") for name in PLACEHOLDERS})


@dataclass(frozen=True, slots=True)
class CannedAnswers:
    """The answers in the order operators wrote them."""

    items: tuple[CannedAnswer, ...] = ()
    file: Path | None = None

    def get(self, answer_id: str) -> CannedAnswer | None:
        return next((a for a in self.items if a.id == answer_id), None)

    def __len__(self) -> int:
        return len(self.items)


def _pick(by_language: Mapping[str, str], language: str) -> str:
    return by_language.get(language) or next(iter(by_language.values()))


def compile_answers(data: object, *, file: str, line_of: LineOf) -> CannedAnswers:
    """Turn the plain data of answers.yaml into answers; raise AnswersError with every problem.

    The file is a mapping with one key, ``answers``: a list of ``{id, title, text}``, where
    ``title`` and ``text`` map a language to its words.
    """
    problems: list[str] = []

    def problem(path: Sequence[str | int], text: str) -> None:
        line = line_of(path)
        where = f"{file}:{line}" if line else file
        dotted = ".".join(str(p) for p in path) or "(top level)"
        problems.append(f"{where}: {dotted}: {text}")

    if data is None:
        return CannedAnswers()
    if not isinstance(data, dict) or set(data) - {"answers"}:
        problem((), "the file must be a mapping with one key, 'answers' (a list)")
        raise AnswersError(problems)
    entries = data.get("answers") or []
    if not isinstance(entries, list):
        problem(("answers",), "must be a list of answers, each with id, title and text")
        raise AnswersError(problems)
    answers: list[CannedAnswer] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        at: tuple[str | int, ...] = ("answers", n)
        if not isinstance(entry, dict):
            problem(at, "each answer is a mapping with id, title and text")
            continue
        for key in sorted(set(entry) - set(_KEYS)):
            problem((*at, key), f"unknown key '{key}' (known: {', '.join(_KEYS)})")
        answer_id = entry.get("id")
        if not isinstance(answer_id, str) or not _ID.match(answer_id):
            problem((*at, "id"), "use lower-case letters, digits, '-' or '_', e.g. 'afval-gemist'")
            answer_id = None
        elif answer_id in seen:
            problem((*at, "id"), f"the id '{answer_id}' is used twice")
        else:
            seen.add(answer_id)
        titles = _by_language(entry.get("title"), (*at, "title"), problem, placeholders=False)
        texts = _by_language(entry.get("text"), (*at, "text"), problem, placeholders=True)
        if answer_id and titles and texts:
            answers.append(CannedAnswer(answer_id, titles, texts))
    if problems:
        raise AnswersError(problems)
    return CannedAnswers(tuple(answers), Path(file))


def _by_language(
    value: object,
    at: tuple[str | int, ...],
    problem: Callable[[Sequence[str | int], str], None],
    *,
    placeholders: bool,
) -> dict[str, str] | None:
    if not isinstance(value, dict) or not value:
        problem(at, "write it per language, e.g. 'nl: ...' (nl, fr or en)")
        return None
    result: dict[str, str] = {}
    for language, words in value.items():
        if language not in LANGUAGES:
            problem((*at, language), f"unknown language '{language}' (use nl, fr or en)")
        elif not isinstance(words, str) or not words.strip():
            problem((*at, language), "must be text, not empty")
        elif placeholders and (trouble := _placeholder_problem(words)):
            problem((*at, language), trouble)
        else:
            result[language] = words.strip() if not placeholders else words.rstrip()
    return result if len(result) == len(value) else None


def _placeholder_problem(text: str) -> str | None:
    """Why ``text`` cannot be filled in, or None when every placeholder is known."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        ]
    except ValueError as exc:
        return f"a lone '{{' or '}}' ({exc}); write '{{{{' or '}}}}' for a brace itself"
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS:
            known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            shown = f"{{{name}}}" if name else "{}"
            return f"unknown placeholder {shown} (known: {known})"
        if spec or conversion:
            return f"write the placeholder {{{name}}} plainly, without ':' or '!'"
    return None


def placeholder_values(
    *,
    citizen_name: str | None,
    language: str,
    reference: str,
    subject: str | None,
    department: str,
    staff_name: str,
    town: str,
) -> dict[str, str]:
    """The values of every placeholder for one ticket, in ``language``."""
    return {
        "citizen_name": citizen_name or NO_NAME.get(language, NO_NAME["nl"]),
        "reference": reference,
        "subject": subject or "",
        "department": department,
        "staff_name": staff_name,
        "town": town,
    }
