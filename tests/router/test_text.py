"""Normalisation and word matching: what makes rules indifferent to case, accents and spacing."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.text import compile_words, normalise, parse_word


def hits(entries: list[str], text: str) -> list[tuple[str, str]]:
    matcher = compile_words([parse_word(e) for e in entries])
    return [(found, entry.written) for found, entry in matcher.hits(normalise(text))]


def found(entries: list[str], text: str) -> bool:
    matcher = compile_words([parse_word(e) for e in entries])
    return matcher.found_in(normalise(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Straatlamp", " straatlamp "),
        ("rioléring", " riolering "),
        ("ÉÈÊË çà ü", " eeee ca u "),
        ("Openbare   verlichting!!", " openbare verlichting "),
        ("pmd-zak, gft_bak", " pmd zak gft bak "),
        ("auto's\n\tfietsen", " auto s fietsen "),
        ("Straße", " strasse "),
        ("e\u0301cole ﬁets", " ecole fiets "),
        ("İSTANBUL 𝕬", " istanbul a "),
        ("", "  "),
        ("?!…", "  "),
    ],
)
def test_normalise_folds_case_accents_and_punctuation(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_parse_word_reads_open_ends() -> None:
    prefix = parse_word("lamp*")
    assert (prefix.words, prefix.starts_open, prefix.ends_open) == ("lamp", False, True)
    suffix = parse_word("*afval")
    assert (suffix.words, suffix.starts_open, suffix.ends_open) == ("afval", True, False)
    inside = parse_word("*afval*")
    assert (inside.starts_open, inside.ends_open) == (True, True)
    phrase = parse_word("  Openbare Verlichting ")
    assert (phrase.words, phrase.starts_open, phrase.ends_open) == (
        "openbare verlichting",
        False,
        False,
    )


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("*", "no letters or digits"),
        ("!!!", "no letters or digits"),
        ("str*at", "'*' may only stand at the very start or end"),
        ("straat* lamp", "'*' may only stand at the very start or end"),
    ],
)
def test_parse_word_rejects_unusable_entries(written: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_word(written)


def test_whole_word_does_not_match_a_longer_word() -> None:
    assert not found(["lamp"], "De lampen branden niet")
    assert found(["lamp"], "De lamp brandt niet")


def test_prefix_matches_longer_words_but_not_inside_them() -> None:
    assert found(["lamp*"], "De lampen branden niet")
    assert found(["lamp*"], "Een lamp.")
    assert not found(["lamp*"], "De straatlampen branden niet")


def test_open_start_matches_word_endings() -> None:
    assert found(["*afval"], "Restafval niet opgehaald")
    assert found(["*afval"], "afval")
    assert not found(["*afval"], "afvalkalender")
    assert found(["*afval*"], "afvalkalender en restafvalzak")


def test_phrases_match_across_any_spacing_and_punctuation() -> None:
    assert found(["openbare verlichting"], "De OPENBARE\n verlichting - kapot")
    assert found(["openbare verlichting"], "openbare-verlichting")
    assert not found(["openbare verlichting"], "openbare verlichtingen")
    assert not found(["openbare verlichting"], "openbare straatverlichting")
    assert found(["openbare verlicht*"], "openbare verlichtingen")


def test_accents_do_not_matter_on_either_side() -> None:
    assert found(["riolering"], "Probleem met de rioléring")
    assert found(["rioléring"], "Probleem met de riolering")


def test_hits_name_the_entry_that_matched_in_text_order() -> None:
    assert hits(
        ["straatlamp", "lamp*", "verlichting"], "Verlichting: lampen en een straatlamp"
    ) == [
        ("verlichting", "verlichting"),
        ("lampen", "lamp*"),
        ("straatlamp", "straatlamp"),
    ]


def test_describe_says_how_an_entry_matches() -> None:
    assert parse_word("lamp*").describe() == "prefix 'lamp'"
    assert parse_word("*afval").describe() == "word ending 'afval'"
    assert parse_word("*afval*").describe() == "part of a word 'afval'"
    assert parse_word("openbare verlichting").describe() == "phrase 'openbare verlichting'"
    assert parse_word("Put").describe() == "word 'put'"


@given(st.text())
def test_normalise_is_stable(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert once.startswith(" ")
    assert once.endswith(" ")
    assert "  " not in once.strip(" ")


def _fold_whole_text(text: str) -> str:
    """The plain definition: decompose, drop accents, fold case, twice over the whole text."""

    def strip(value: str) -> str:
        decomposed = unicodedata.normalize("NFKD", value)
        return "".join(ch for ch in decomposed if not unicodedata.combining(ch))

    return " " + " ".join(re.findall(r"[^\W_]+", strip(strip(text).casefold()))) + " "


@given(st.text())
def test_folding_per_character_equals_folding_the_whole_text(text: str) -> None:
    assert normalise(text) == _fold_whole_text(text)


@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=12))
def test_a_word_always_finds_itself_among_others(word: str) -> None:
    try:
        entry = parse_word(word)
    except ValueError:
        return  # letters that fold to nothing, such as some modifier letters
    matcher = compile_words([entry])
    assert matcher.found_in(normalise(f"voor {word}, achter"))
