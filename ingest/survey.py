"""Reading a citizen's answer to "how satisfied are you, from 1 to 5?" in their own words.

Citizens answer a survey the way they answer a friend: "4", "vier", "quatre op 5", "😊",
"slecht", "très bien merci", "4 maar het duurde lang". ``read_answer`` turns such a reply into a
score and the comment that came with it, or says it could not tell, so the question can be asked
again instead of a guess being recorded. ``wants_no_more`` spots "stop"-like replies.

Order of trust: a digit from 1 to 5 standing alone; a number word; a row of stars; a word or
phrase that says how it went (with "niet", "pas", "not" in front turning it around); an emoji.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SCALE = range(1, 6)

# Number words. "een", "un(e)" and "one" are also articles ("een goede hulp"), so they only
# count when they are the whole answer or are followed by "op 5" and the like.
_NUMBERS: dict[str, int] = {
    # nl
    "twee": 2, "drie": 3, "vier": 4, "vijf": 5,
    # fr
    "deux": 2, "trois": 3, "quatre": 4, "cinq": 5,
    # en
    "two": 2, "three": 3, "four": 4, "five": 5,
}  # fmt: skip
_ONE = {"een", "een.", "één", "eén", "ene", "un", "une", "one"}

# Words and phrases that say how it went. Longer phrases are tried first, so "zeer goed" wins
# over "goed"; a negation right before a positive phrase makes it a 2, before "slecht" a 3.
_PHRASES: dict[str, int] = {
    # nl
    "zeer slecht": 1, "heel slecht": 1, "erg slecht": 1, "waardeloos": 1, "schandalig": 1,
    "verschrikkelijk": 1, "slecht": 2, "ontevreden": 2, "teleurgesteld": 2, "matig": 2,
    "gaat wel": 3, "redelijk": 3, "middelmatig": 3, "oké": 3, "oke": 3, "ok": 3,
    "voldoende": 3, "tevreden": 4, "goed": 4, "vriendelijk": 4, "zeer goed": 5, "heel goed": 5,
    "erg goed": 5, "zeer tevreden": 5, "heel tevreden": 5, "uitstekend": 5, "perfect": 5,
    "super": 5, "top": 5, "prima": 4, "fantastisch": 5, "schitterend": 5,
    # fr
    "très mauvais": 1, "nul": 1, "catastrophique": 1, "horrible": 1, "mauvais": 2,
    "insatisfait": 2, "mécontent": 2, "décevant": 2, "moyen": 3, "bof": 3, "correct": 3,
    "ça va": 3, "satisfait": 4, "content": 4, "bien": 4, "bon": 4, "très bien": 5,
    "très satisfait": 5, "excellent": 5, "parfait": 5, "génial": 5,
    # en
    "very bad": 1, "terrible": 1, "awful": 1, "horrible service": 1, "useless": 1, "bad": 2,
    "poor": 2, "disappointed": 2, "unhappy": 2, "okay": 3, "average": 3, "fine": 3,
    "so so": 3, "good": 4, "satisfied": 4, "happy": 4, "very good": 5, "great": 5,
    "excellent service": 5, "very satisfied": 5, "very happy": 5, "brilliant": 5,
    "goede": 4, "slechte": 2, "pas mal": 4,
}  # fmt: skip
_NEGATIONS = {"niet", "pas", "not", "never", "nooit", "geen", "no"}

_EMOJI: dict[str, int] = {
    "😡": 1, "🤬": 1, "😠": 1, "👎": 1, "💩": 1, "😤": 2, "😞": 2, "🙁": 2, "☹": 2, "😟": 2,
    "😕": 2, "😢": 2, "😐": 3, "😑": 3, "🤷": 3, "🙂": 4, "😊": 4, "👍": 4, "😀": 5, "😃": 5,
    "😄": 5, "😁": 5, "🤩": 5, "😍": 5, "🥰": 5, "👏": 5, "🙏": 4, "❤": 5, "💯": 5,
}  # fmt: skip
_STARS = re.compile(r"[⭐★]")
_DIGIT = re.compile(r"(?<![\d.,/])([0-9]{1,2})(?:[.,]([0-9]))?(?![\d])")
_OUT_OF = re.compile(r"^\s*(?:/|op|sur|out of|of|van)\s*(?:5|vijf|cinq|five)\b", re.IGNORECASE)
_WORD = re.compile(r"[\w'’]+", re.UNICODE)
# "2 weken gewacht" is a duration, not a score.
_UNIT = re.compile(
    r"^\s*(dag|dagen|week|weken|maand|maanden|uur|uren|keer|minuten|jours?|semaines?|mois|"
    r"heures?|fois|days?|weeks?|months?|hours?|times|minutes?)\b",
    re.IGNORECASE,
)
_STOP = re.compile(
    r"^\s*(stop|stopp?en|uitschrijven|afmelden|geen vragen meer|niet meer|arr[eê]t(er)?|"
    r"d[ée]sinscri(re|ption)|unsubscribe|no more)\s*[.!]*\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SurveyAnswer:
    """A score from 1 to 5 (None when the reply does not give one) and what else was said."""

    score: int | None
    comment: str | None = None


def wants_no_more(text: str) -> bool:
    """Whether the reply asks not to be surveyed again ("STOP", "afmelden", "unsubscribe")."""
    return bool(_STOP.match(text))


def read_answer(text: str) -> SurveyAnswer:
    """The score a reply gives, with the rest of the reply as the comment."""
    cleaned = unicodedata.normalize("NFC", text).strip()
    if not cleaned:
        return SurveyAnswer(None)
    for reader in (_by_digit, _by_number_word, _by_stars, _by_phrase, _by_emoji):
        found = reader(cleaned)
        if found is not None:
            score, (start, end) = found
            return SurveyAnswer(score, _comment(cleaned, start, end))
    return SurveyAnswer(None, cleaned)


def _comment(text: str, start: int, end: int) -> str | None:
    """The whole reply when it says more than the score; staff read it in the citizen's words."""
    rest = re.sub(r"[\s.,;:!?\-–—/()\ufe0f⭐★]+", "", text[:start] + text[end:])
    rest = "".join(c for c in rest if c not in _EMOJI)
    return text if rest else None


Found = tuple[int, tuple[int, int]]


def _by_digit(text: str) -> Found | None:
    for m in _DIGIT.finditer(text):
        value = int(m.group(1))
        if _UNIT.match(text[m.end() :]):
            continue
        if m.group(2) is not None:
            return None  # "3,5": half a point is not on the scale; ask again
        if value in SCALE:
            end = m.end()
            if out_of := _OUT_OF.match(text[end:]):
                end += out_of.end()
            return value, (m.start(), end)
        return None  # "10", "0": another scale; ask again rather than guess
    return None


def _by_number_word(text: str) -> Found | None:
    words = list(_WORD.finditer(text.lower()))
    for i, m in enumerate(words):
        word = m.group()
        if word in _NUMBERS:
            end = m.end()
            if out_of := _OUT_OF.match(text[end:]):
                end += out_of.end()
            return _NUMBERS[word], (m.start(), end)
        if word in _ONE:
            after = _OUT_OF.match(text[m.end() :])
            if after or len(words) == 1:
                return 1, (m.start(), m.end() + (after.end() if after else 0))
            if i + 1 < len(words) and words[i + 1].group() in _NUMBERS:
                continue  # "een vier": the article before the number
    return None


def _by_stars(text: str) -> Found | None:
    stars = list(_STARS.finditer(text))
    if stars and len(stars) in SCALE:
        return len(stars), (stars[0].start(), stars[-1].end())
    return None


def _by_phrase(text: str) -> Found | None:
    lowered = text.lower()
    best: tuple[int, int, int] | None = None  # start, end, score
    for phrase in sorted(_PHRASES, key=len, reverse=True):
        for m in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", lowered):
            start, end = m.start(), m.end()
            if best is not None and start < best[1] and end > best[0]:
                continue  # inside a longer phrase already found
            score = _PHRASES[phrase]
            before = _WORD.findall(lowered[:start])[-2:]
            if any(w in _NEGATIONS for w in before):
                score = 3 if score <= 2 else 2
                start = lowered.rfind(next(w for w in before if w in _NEGATIONS), 0, start)
            if best is None or start < best[0]:
                best = (start, end, score)
    if best is None:
        return None
    return best[2], (best[0], best[1])


def _by_emoji(text: str) -> Found | None:
    for i, char in enumerate(text):
        if char in _EMOJI:
            return _EMOJI[char], (i, i + 1)
    return None
