"""Text normalisation and word matching for routing rules.

Operators write words the way they would say them ("Straatlamp", "rioléring", "openbare
verlichting"); citizens write them any way at all. Both sides go through :func:`normalise`, so
case, accents, punctuation and spacing never decide whether a word matches.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# After normalisation a text is single-space separated runs of letters and digits, padded with
# one space at each end, so a space on both sides is exactly a word boundary.
_BEFORE = r"(?<= )"
_AFTER = r"(?= )"
_REST_OF_WORD = r"\w*"


def normalise(text: str) -> str:
    """Fold case and accents and reduce everything else to single spaces.

    Args:
        text: Any text.

    Returns:
        The words of ``text``, lower case and without accents, joined by single spaces and padded
        with one space at each end (``" openbare verlichting "``).
    """
    return padded(normalised_words(text))


def normalised_words(text: str) -> list[str]:
    """The words of ``text`` as :func:`normalise` leaves them, in order."""
    # One pass of str.translate folds each character and turns everything that is not a letter
    # or digit into a space; split() then drops the runs of spaces.
    return text.translate(_FOLD).split()


def padded(words: Sequence[str]) -> str:
    """Normalised words as :func:`normalise` gives them: single spaces, one at each end."""
    return " " + " ".join(words) + " "


def _fold_char(char: str) -> str:
    # Compatibility forms (a mathematical 𝐀, a ligature) may decompose to capitals, and case
    # folding may add accents again (İ), so fold between two accent strips.
    folded = _strip_accents(_strip_accents(char).casefold())
    # A word is a run of letters and digits (what the regular expression [^\W_] calls them).
    return "".join(ch if ch.isalnum() else " " for ch in folded)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class _FoldTable(dict[int, str]):
    """Folding per character for ``str.translate``, remembered once a character was seen.

    Folding character by character gives the same result as folding the whole text (accents are
    dropped, never recombined) and keeps a long e-mail from going through Python one character
    at a time. The ASCII characters are filled in up front, so that ``str.translate`` can use its
    fast path for ASCII text. The table is bounded so that odd input cannot grow it without end.
    """

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        if len(self) < _FOLD_TABLE_LIMIT:
            self[code] = folded
        return folded


_FOLD_TABLE_LIMIT = 20_000
_FOLD = _FoldTable((code, _fold_char(chr(code))) for code in range(128))


@dataclass(frozen=True, slots=True)
class WordEntry:
    """One word or phrase as the operator wrote it, and how it matches."""

    written: str
    words: str
    starts_open: bool
    ends_open: bool

    def describe(self) -> str:
        """Say in plain words what the entry matches, for explanations."""
        if self.starts_open and self.ends_open:
            return f"part of a word '{self.words}'"
        if self.ends_open:
            return f"prefix '{self.words}'"
        if self.starts_open:
            return f"word ending '{self.words}'"
        return f"phrase '{self.words}'" if " " in self.words else f"word '{self.words}'"


def parse_word(written: str) -> WordEntry:
    """Read one operator word; ``*`` at the start or end leaves that side of the word open.

    Args:
        written: The entry as written, e.g. ``"lamp*"``, ``"*afval"`` or ``"openbare verlichting"``.

    Returns:
        The parsed entry.

    Raises:
        ValueError: The entry has no letters or digits, or a ``*`` in the middle of a word.
    """
    stripped = written.strip()
    starts_open = stripped.startswith("*")
    ends_open = stripped.endswith("*") and len(stripped) > 1
    core = stripped.removeprefix("*") if starts_open else stripped
    core = core.removesuffix("*") if ends_open else core
    if "*" in core:
        raise ValueError(
            f"'{written}': '*' may only stand at the very start or end, e.g. 'lamp*' or '*afval'"
        )
    words = normalise(core).strip()
    if not words:
        raise ValueError(f"'{written}' has no letters or digits to match")
    return WordEntry(written=written, words=words, starts_open=starts_open, ends_open=ends_open)


def _entry_pattern(entry: WordEntry) -> str:
    head = _REST_OF_WORD if entry.starts_open else ""
    tail = _REST_OF_WORD if entry.ends_open else ""
    return head + re.escape(entry.words) + tail


@functools.lru_cache(maxsize=16)
def words_of(normalised: str) -> frozenset[str]:
    """The set of words of a text that went through :func:`normalise`."""
    # One message's subject, text and both are asked about by every words condition; the
    # cache makes that one split per text instead of one per condition.
    return frozenset(normalised.split())


@dataclass(frozen=True, slots=True)
class WordMatcher:
    """A list of words and phrases compiled for matching over normalised text.

    ``pattern`` finds each occurrence and tells which entry it was (for explanations). For the
    yes/no question routing asks, no regular expression is needed: single whole words are
    looked up in the text's set of words, and every other entry is a plain substring test
    (``literals``), because in normalised text a space stands exactly at each word boundary:
    "lamp*" is " lamp", "*afval" is "afval ", "openbare verlichting" is " openbare verlichting ".
    """

    entries: tuple[WordEntry, ...]
    pattern: re.Pattern[str]
    whole_words: frozenset[str]
    literals: tuple[str, ...]

    def found_in(self, normalised: str, words: frozenset[str] | None = None) -> bool:
        """Whether any entry occurs in text that went through :func:`normalise`.

        Args:
            normalised: The text, normalised.
            words: The set of words of ``normalised``, when the caller already has it.
        """
        if words is None:
            words = words_of(normalised)
        if self.whole_words and not self.whole_words.isdisjoint(words):
            return True
        return any(literal in normalised for literal in self.literals)

    def hits(self, normalised: str) -> list[tuple[str, WordEntry]]:
        """Every occurrence, in text order, with the entry that matched it."""
        found: list[tuple[str, WordEntry]] = []
        for match in self.pattern.finditer(normalised):
            index = (match.lastindex or 1) - 1
            found.append((match.group(0), self.entries[index]))
        return found


def compile_words(entries: Sequence[WordEntry]) -> WordMatcher:
    """Build one matcher for all entries; each alternative is a group, to tell which one hit.

    Args:
        entries: Parsed entries, at least one.

    Returns:
        The compiled matcher.
    """
    alternatives = "|".join(f"({_entry_pattern(entry)})" for entry in entries)
    pattern = re.compile(f"{_BEFORE}(?:{alternatives}){_AFTER}")
    simple = [e for e in entries if not (e.starts_open or e.ends_open or " " in e.words)]
    return WordMatcher(
        entries=tuple(entries),
        pattern=pattern,
        whole_words=frozenset(e.words for e in simple),
        literals=tuple(
            ("" if e.starts_open else " ") + e.words + ("" if e.ends_open else " ")
            for e in entries
            if e not in simple
        ),
    )
