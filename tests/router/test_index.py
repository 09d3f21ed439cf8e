"""The router's shortcuts never change a decision.

``RuleSet.route`` looks only at the rules a message's words or sender domain can make fire (an
index of whole words, word beginnings, word endings and domains), tests words by substring instead
of by regular expression, and skips the search of an operator's regular expression when the text
lacks what every match contains; ``RuleSet.explain`` still evaluates every rule in full. Over
generated rule sets that use every kind of word entry, regular expressions, sender domains and
every way of combining conditions, and messages made of those words bent the ways citizens bend
them, both must always agree.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import RoutingInput, RuleSet, compile_rules
from router.rules import required_text
from router.text import compile_words, normalise, parse_word

STEMS = ["lamp", "straat", "afval", "riool", "école", "boom", "put", "gat", "park", "glas"]

# An operator's entry: a whole word, a beginning ("lamp*"), an ending ("*afval"), a part of a
# word ("*riool*"), or a phrase that may be open at either end.
entry = st.one_of(
    st.sampled_from(STEMS),
    st.sampled_from(STEMS).map(lambda w: w + "*"),
    st.sampled_from(STEMS).map(lambda w: "*" + w),
    st.sampled_from(STEMS).map(lambda w: "*" + w + "*"),
    st.tuples(st.sampled_from(STEMS), st.sampled_from(STEMS), st.booleans(), st.booleans()).map(
        lambda t: ("*" if t[2] else "") + t[0] + " " + t[1] + ("*" if t[3] else "")
    ),
)
word_condition = st.builds(
    lambda key, entries: {key: entries},
    st.sampled_from(["words", "subject_words", "text_words"]),
    st.lists(entry, min_size=1, max_size=3),
)
# Regular expressions as operators write them, and some that test the shortcut's limits: an
# alternation (no text is required), case-sensitive parts, letters that match non-ASCII letters
# when capitals are ignored ("s" and the long s "ſ", "k" and the Kelvin sign "K").
REGEXES = [
    r"\bdossier\s*nr\.?\s*\d+",
    r"nr\d",
    r"(?:lamp|put)\s*\d+",
    r"straat|NR",
    r"(?-i:NR)\d",
    r"ſt",
    r"\u212a\d",
    r"kk",
    r"st\b",
    r"\d{4} ?[a-z]{2}\b",
    r"(?x) dos sier",
    r"é",
]
# Domains with the domains above and below them.
DOMAINS = ["wingene.be", "mail.wingene.be", "example.com", "post.mail.wingene.be"]
simple_condition = st.one_of(
    word_condition,
    st.lists(st.sampled_from(REGEXES), min_size=1, max_size=2).map(lambda r: {"regex": r}),
    st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=2).map(lambda d: {"sender_domain": d}),
    st.just({"channel": "sms"}),
    st.just({"kind": "complaint"}),
    st.builds(lambda w, c: {**w, "channel": c}, word_condition, st.sampled_from(["sms", "email"])),
)
condition: st.SearchStrategy[dict[str, Any]] = st.one_of(
    simple_condition,
    st.lists(simple_condition, min_size=1, max_size=3).map(lambda b: {"any": b}),
    st.lists(simple_condition, min_size=1, max_size=2).map(lambda b: {"all": b}),
    st.builds(lambda w, n: {**w, "not": n}, word_condition, simple_condition),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    rules = []
    for number in range(draw(st.integers(1, 12))):
        rule: dict[str, Any] = {"id": f"r{number}", "when": draw(condition)}
        if draw(st.booleans()):
            rule["then"] = {"department": draw(st.sampled_from(["a", "b", "c"]))}
        else:
            rule["then"] = {"tags": [f"t{number}"]}
            rule["always"] = draw(st.booleans())
        if draw(st.integers(0, 9)) == 0:
            rule["stop"] = True
        rules.append(rule)
    return compile_rules({"default_department": "a", "rules": rules}, departments={"a", "b", "c"})


# Citizens' words: the stems as they are, with something before or after, in capitals, with
# punctuation around, or something else entirely.
citizen_word = st.one_of(
    st.sampled_from(STEMS),
    st.tuples(st.sampled_from(["", "straat", "rest", "x"]), st.sampled_from(STEMS)).map("".join),
    st.tuples(st.sampled_from(STEMS), st.sampled_from(["", "en", "paal", "s"])).map("".join),
    st.sampled_from(STEMS).map(str.upper),
    st.sampled_from(STEMS).map(lambda w: f"({w}),"),
    st.sampled_from(["dossier nr. 12", "DOSSIER NR7", "Nr5", "lamp 3", "1234 AB", "ſt", "KK"]),
    st.sampled_from(["\u212a9", "\u212ak", "dosſier", "école", "st.", "nr"]),
    st.text(max_size=8),
)
text = st.lists(citizen_word, max_size=10).map(" ".join)
messages = st.builds(
    RoutingInput,
    channel=st.sampled_from(["sms", "email", "webform"]),
    kind=st.sampled_from([None, "complaint", "question"]),
    subject=text,
    text=text,
    sender_address=st.sampled_from(
        [
            None,
            "an@wingene.be",
            "bea@mail.wingene.be",
            "cas@post.mail.wingene.be",
            "dirk@notwingene.be",
            "eva@example.com",
            "fien@example.community",
            "+32470123456",
        ]
    ),
)


@settings(max_examples=400)
@given(rule_sets(), st.lists(messages, min_size=1, max_size=5))
def test_route_with_the_index_decides_like_every_rule_evaluated(
    rules: RuleSet, batch: list[RoutingInput]
) -> None:
    for message in batch:
        assert rules.route(message) == rules.explain(message).decision


@settings(max_examples=400)
@given(st.lists(entry, min_size=1, max_size=4), text)
def test_substring_test_agrees_with_the_regular_expression(entries: list[str], said: str) -> None:
    matcher = compile_words([parse_word(e) for e in entries])
    normalised = normalise(said)
    assert matcher.found_in(normalised) == bool(matcher.hits(normalised))


@pytest.mark.parametrize(
    ("source", "required"),
    [
        (r"\bDossier\s*nr\.?\s*\d+", "dossier"),
        (r"\d{4} ?[a-z]{2}\b", None),
        (r"lamp|put", None),
        (r"(?:lamp|put)\s*nr", "nr"),
        (r"(?x) dos sier \d", "dossier"),
        (r"abc?de", "ab"),
        (r"ſtraat", "traat"),
    ],
)
def test_required_text_is_the_longest_plain_run_at_the_top(
    source: str, required: str | None
) -> None:
    assert required_text(re.compile(source, re.IGNORECASE)) == required


# Pieces of regular expressions, and of texts they may or may not match.
regex_piece = (
    st.sampled_from(["nr", "NR", "dos", "s", "k", "ſ", "\u212a", "é", "|", "(?-i:AB)", "(?i:q)"])
    | st.sampled_from([r"\s*", r"\d+", r"\.?", ".", "[a-z]", r"\b", "(?:nr|ab)", r"\."])
    | st.sampled_from(["x?", "x*", "x+", "x{2}"])
)
said = st.lists(
    st.sampled_from(["nr", "NR", "Nr", "dos", "DOS", "s", "S", "ſ", "k", "K", "\u212a", "é"])
    | st.sampled_from([" ", ".", "12", "ab", "AB", "x", "xx", "q", "Q", "\n"]),
    max_size=12,
).map("".join)


@settings(max_examples=400)
@given(st.lists(regex_piece, min_size=1, max_size=6).map("".join), said)
def test_a_text_without_the_required_text_never_matches(source: str, text: str) -> None:
    try:
        pattern = re.compile(source, re.IGNORECASE)
    except re.error:
        return
    required = required_text(pattern)
    if required is not None and pattern.search(text) and text.isascii():
        assert required in text.lower()
