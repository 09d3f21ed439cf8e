"""The router's shortcuts never change a decision.

``RuleSet.route`` looks only at the rules a message's words can make fire (an index of whole
words, word beginnings and word endings) and tests words by substring instead of by regular
expression; ``RuleSet.explain`` still evaluates every rule with the regular expressions. Over
generated rule sets that use every kind of word entry and every way of combining conditions, and
messages made of those words bent the ways citizens bend them, both must always agree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router import RoutingInput, RuleSet, compile_rules
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
simple_condition = st.one_of(
    word_condition,
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
    st.text(max_size=8),
)
text = st.lists(citizen_word, max_size=10).map(" ".join)
messages = st.builds(
    RoutingInput,
    channel=st.sampled_from(["sms", "email", "webform"]),
    kind=st.sampled_from([None, "complaint", "question"]),
    subject=text,
    text=text,
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
