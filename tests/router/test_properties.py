"""Properties of routing over arbitrary messages, checked against the shipped sample rules."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from meldpunt.yamlsource import load_yaml_file
from router import CHANNELS, KINDS, PRIORITIES, RoutingInput, RuleSet, compile_rules

DEPARTMENTS = {"front-desk", "technical-service", "environment", "civil-affairs", "complaints"}
_doc = load_yaml_file(Path(__file__).resolve().parents[2] / "config" / "routing.yaml")
SAMPLE: RuleSet = compile_rules(
    _doc.data, file=_doc.file, line_of=_doc.line_of, departments=DEPARTMENTS
)

# Text that mixes rule words with anything at all, so that rules really fire.
_WORDS = st.sampled_from(
    ["afval", "Straatlamp", "lampen", "gevaarlijk", "gaslek", "rioléring", "muziek", "vergunning"]
)
_TEXT = st.lists(st.one_of(_WORDS, st.text(max_size=20)), max_size=8).map(" ".join)

messages = st.builds(
    RoutingInput,
    channel=st.one_of(st.sampled_from(CHANNELS), st.text(max_size=10)),
    kind=st.one_of(st.none(), st.sampled_from(KINDS)),
    subject=_TEXT,
    text=_TEXT,
    sender_address=st.one_of(st.none(), st.emails().map(str.casefold), st.text(max_size=20)),
    has_location=st.booleans(),
    has_attachment=st.booleans(),
    language=st.one_of(st.none(), st.sampled_from(["nl", "fr", "en-GB", "de", ""])),
)


@given(messages)
def test_route_always_gives_a_well_formed_decision(message: RoutingInput) -> None:
    decision = SAMPLE.route(message)
    assert decision.department in DEPARTMENTS
    assert decision.priority in PRIORITIES
    assert list(decision.tags) == sorted(set(decision.tags))
    order = SAMPLE.rule_ids
    assert [order.index(rule_id) for rule_id in decision.fired] == sorted(
        order.index(rule_id) for rule_id in decision.fired
    )
    by_id = {rule.id: rule for rule in SAMPLE.rules}
    assert decision.defaulted == all(by_id[i].department is None for i in decision.fired)
    if decision.defaulted:
        assert decision.department == SAMPLE.default_department
    if message.kind is not None:
        assert decision.kind == message.kind


@given(messages)
def test_explain_agrees_with_route(message: RoutingInput) -> None:
    explanation = SAMPLE.explain(message)
    assert explanation.decision == SAMPLE.route(message)
    assert [t.rule_id for t in explanation.rules] == list(SAMPLE.rule_ids)
    assert tuple(t.rule_id for t in explanation.rules if t.applied) == explanation.decision.fired
    assert all(t.matched for t in explanation.rules if t.applied)
    assert explanation.render()


@given(messages)
def test_a_complaint_always_reaches_the_complaints_officer(message: RoutingInput) -> None:
    complaint = RoutingInput(
        channel="webform",
        kind="complaint",
        subject=message.subject,
        text=message.text,
        sender_address=message.sender_address,
        language=message.language,
    )
    assert SAMPLE.route(complaint).department == "complaints"
