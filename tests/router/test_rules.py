"""Routing semantics: every condition and action, rule order, always/stop, defaults, explain."""

from __future__ import annotations

import textwrap

import pytest

from meldpunt.yamlsource import load_yaml_text
from router import Decision, RoutingInput, RuleSet, compile_rules

DEPARTMENTS = {"front-desk", "technical-service", "environment", "civil-affairs", "complaints"}


def rules(yaml_text: str, *, default: str = "front-desk") -> RuleSet:
    doc = load_yaml_text(textwrap.dedent(yaml_text), "routing.yaml")
    return compile_rules(
        doc.data,
        file="routing.yaml",
        line_of=doc.line_of,
        departments=DEPARTMENTS,
        default_department=default,
    )


def one_rule(when: str, then: str = "{department: technical-service}") -> RuleSet:
    return rules(f"rules:\n  - id: r\n    when: {when}\n    then: {then}\n")


def msg(
    text: str = "",
    *,
    channel: str = "webform",
    kind: str | None = None,
    subject: str = "",
    sender: str | None = None,
    has_location: bool = False,
    has_attachment: bool = False,
    language: str | None = None,
) -> RoutingInput:
    return RoutingInput(
        channel=channel,
        kind=kind,
        subject=subject,
        text=text,
        sender_address=sender,
        has_location=has_location,
        has_attachment=has_attachment,
        language=language,
    )


def fires(ruleset: RuleSet, message: RoutingInput) -> bool:
    return ruleset.route(message).fired == ("r",)


# --- conditions ---------------------------------------------------------------------------------


def test_channel_condition_accepts_one_or_a_list() -> None:
    single = one_rule("{channel: email}")
    assert fires(single, msg(channel="email"))
    assert not fires(single, msg(channel="sms"))
    several = one_rule("{channel: [webform, app]}")
    assert fires(several, msg(channel="app"))
    assert not fires(several, msg(channel="email"))


def test_kind_condition_never_matches_an_unknown_kind() -> None:
    ruleset = one_rule("{kind: [complaint, question]}")
    assert fires(ruleset, msg(kind="complaint"))
    assert not fires(ruleset, msg(kind="report"))
    assert not fires(ruleset, msg(kind=None))


def test_words_ignore_case_and_accents() -> None:
    ruleset = one_rule("{words: [Straatlamp, rioléring]}")
    assert fires(ruleset, msg("de STRAATLAMP is stuk"))
    assert fires(ruleset, msg("riolering verstopt"))
    assert fires(ruleset, msg("RIOLÉRING verstopt"))
    assert not fires(ruleset, msg("de straat is stuk"))


def test_whole_word_by_default_and_prefix_on_request() -> None:
    whole = one_rule("{words: [lamp]}")
    assert not fires(whole, msg("de lampen branden niet"))
    assert fires(whole, msg("de lamp brandt niet"))
    prefix = one_rule('{words: ["lamp*"]}')
    assert fires(prefix, msg("de lampen branden niet"))
    assert not fires(prefix, msg("de straatlampen branden niet"))


def test_multi_word_phrases_match() -> None:
    ruleset = one_rule('{words: ["openbare verlichting"]}')
    assert fires(ruleset, msg("De Openbare  Verlichting in de Kerkstraat"))
    assert not fires(ruleset, msg("openbare gebouwen en verlichting"))


def test_words_look_at_subject_and_text_by_default() -> None:
    ruleset = one_rule("{words: [afval]}")
    assert fires(ruleset, msg(subject="Afval", text="niet opgehaald"))
    assert fires(ruleset, msg(subject="Vraag", text="afval niet opgehaald"))


def test_subject_words_and_text_words_look_at_one_part_only() -> None:
    subject_only = one_rule("{subject_words: [spoed]}")
    assert fires(subject_only, msg(subject="SPOED", text="vraag"))
    assert not fires(subject_only, msg(subject="vraag", text="spoed"))
    text_only = one_rule("{text_words: [spoed]}")
    assert fires(text_only, msg(subject="vraag", text="spoed"))
    assert not fires(text_only, msg(subject="spoed", text="vraag"))


def test_a_phrase_does_not_run_from_the_subject_into_the_text() -> None:
    ruleset = one_rule('{words: ["openbare verlichting"]}')
    assert not fires(ruleset, msg(subject="Openbare", text="verlichting kapot"))


def test_regex_is_case_insensitive_on_subject_and_text() -> None:
    ruleset = one_rule(r"{regex: '\bput(ten)?\s+in\b'}")
    assert fires(ruleset, msg(subject="PUT IN de weg"))
    assert fires(ruleset, msg(text="Er zijn putten in de straat"))
    assert not fires(ruleset, msg(text="een input in het formulier"))


def test_any_of_several_regexes_is_enough() -> None:
    ruleset = one_rule(r"{regex: ['^dringend', '\d{4} ?[a-z]{2}$']}")
    assert fires(ruleset, msg(subject="Dringend: water"))
    assert not fires(ruleset, msg(subject="niet dringend"))
    assert fires(ruleset, msg(text="postcode 8750 WI"))


def test_sender_matches_whole_addresses_case_insensitively() -> None:
    ruleset = one_rule('{sender: ["Jan@Example.be", "+32 470 12 34 56"]}')
    assert fires(ruleset, msg(sender="jan@example.be"))
    assert fires(ruleset, msg(sender="+32470123456"))
    assert not fires(ruleset, msg(sender="jan@example.be.evil"))
    assert not fires(ruleset, msg(sender=None))


def test_sender_domain_matches_the_domain_and_its_subdomains_only() -> None:
    ruleset = one_rule("{sender_domain: Wingene.BE}")
    assert fires(ruleset, msg(sender="an@wingene.be"))
    assert fires(ruleset, msg(sender="An@Mail.Wingene.be"))
    assert not fires(ruleset, msg(sender="an@notwingene.be"))
    assert not fires(ruleset, msg(sender="wingene.be@example.com"))
    assert not fires(ruleset, msg(sender="+3250123456"))
    assert not fires(ruleset, msg(sender=None))


def test_location_and_attachment_conditions_both_ways() -> None:
    ruleset = one_rule("{has_location: true, has_attachment: false}")
    assert fires(ruleset, msg(has_location=True))
    assert not fires(ruleset, msg(has_location=True, has_attachment=True))
    assert not fires(ruleset, msg())


def test_language_matches_known_languages_and_their_regional_forms() -> None:
    ruleset = one_rule("{language: [fr, EN]}")
    assert fires(ruleset, msg(language="fr"))
    assert fires(ruleset, msg(language="fr-BE"))
    assert fires(ruleset, msg(language="en_GB"))
    assert not fires(ruleset, msg(language="nl"))
    assert not fires(ruleset, msg(language="frr"))


def test_language_never_matches_when_the_language_is_unknown() -> None:
    ruleset = one_rule("{language: nl}")
    assert not fires(ruleset, msg(language=None))
    assert not fires(ruleset, msg(language=""))


def test_all_conditions_of_a_block_must_hold() -> None:
    ruleset = one_rule("{channel: app, words: [lamp], has_location: true}")
    assert fires(ruleset, msg("lamp", channel="app", has_location=True))
    assert not fires(ruleset, msg("lamp", channel="app"))
    assert not fires(ruleset, msg("lamp", channel="email", has_location=True))


def test_any_needs_one_block_to_hold() -> None:
    ruleset = one_rule("{any: [{words: [lawaai]}, {channel: voice, words: [muziek]}]}")
    assert fires(ruleset, msg("lawaai"))
    assert fires(ruleset, msg("muziek", channel="voice"))
    assert not fires(ruleset, msg("muziek", channel="sms"))


def test_all_needs_every_block_to_hold() -> None:
    ruleset = one_rule("{all: [{words: [kapot]}, {words: ['lamp*']}]}")
    assert fires(ruleset, msg("lampen kapot"))
    assert not fires(ruleset, msg("lampen"))
    assert not fires(ruleset, msg("kapot"))


def test_not_inverts_a_block() -> None:
    ruleset = one_rule("{words: [muziek], not: {words: [vergunning]}}")
    assert fires(ruleset, msg("luide muziek"))
    assert not fires(ruleset, msg("vergunning voor muziek"))


def test_not_language_also_holds_when_the_language_is_unknown() -> None:
    # Documented pitfall: the inner condition fails on an unknown language, so 'not' holds.
    ruleset = one_rule("{not: {language: nl}}")
    assert fires(ruleset, msg(language=None))
    assert fires(ruleset, msg(language="fr"))
    assert not fires(ruleset, msg(language="nl"))


def test_a_rule_without_conditions_matches_every_message() -> None:
    ruleset = rules("""
        rules:
          - id: everything
            then: {tags: [alles]}
    """)
    assert ruleset.route(msg()).tags == ("alles",)


# --- actions and order --------------------------------------------------------------------------

ORDERED = """
    rules:
      - id: tag-early
        when: {words: [lamp]}
        then: {tags: [licht], priority: low}
      - id: lights
        when: {words: [lamp]}
        then: {department: technical-service, kind: report, tags: [verlichting]}
      - id: waste
        when: {words: [afval]}
        then: {department: environment, tags: [afval], priority: urgent}
      - id: urgent
        always: true
        when: {words: [gevaarlijk]}
        then: {department: complaints, priority: high, tags: [dringend], kind: complaint}
      - id: late-tag
        when: {words: [lamp]}
        then: {tags: [te-laat]}
"""


def test_first_rule_that_sets_a_department_decides_it() -> None:
    d = rules(ORDERED).route(msg("lamp naast het afval"))
    assert d.department == "technical-service"
    assert d.fired == ("tag-early", "lights")
    assert "afval" not in d.tags
    assert d.defaulted is False


def test_rules_without_a_department_apply_and_evaluation_goes_on() -> None:
    d = rules(ORDERED).route(msg("lamp"))
    assert d == Decision(
        department="technical-service",
        kind="report",
        priority="low",
        tags=("licht", "verlichting"),
        fired=("tag-early", "lights"),
        defaulted=False,
    )


def test_matching_rules_after_the_decision_are_skipped() -> None:
    d = rules(ORDERED).route(msg("lamp"))
    assert "late-tag" not in d.fired
    assert "te-laat" not in d.tags


def test_always_rules_still_apply_tags_priority_and_kind_but_not_their_department() -> None:
    d = rules(ORDERED).route(msg("gevaarlijk afval"))
    assert d.department == "environment"
    assert d.fired == ("waste", "urgent")
    assert d.tags == ("afval", "dringend")
    assert d.priority == "urgent"
    assert d.kind == "complaint"


def test_an_always_rule_before_the_decision_may_decide_the_department() -> None:
    d = rules(ORDERED).route(msg("gevaarlijk"))
    assert d.department == "complaints"
    assert d.fired == ("urgent",)


def test_highest_priority_wins_whatever_the_order() -> None:
    ruleset = rules("""
        rules:
          - id: high
            when: {words: [a]}
            then: {priority: high}
          - id: low
            when: {words: [a]}
            then: {priority: low}
          - id: urgent
            when: {words: [b]}
            then: {priority: urgent}
    """)
    assert ruleset.route(msg("a")).priority == "high"
    assert ruleset.route(msg("a b")).priority == "urgent"
    assert ruleset.route(msg("c")).priority == "normal"


def test_a_single_low_priority_rule_lowers_the_priority() -> None:
    assert rules(ORDERED).route(msg("lamp")).priority == "low"


def test_tags_are_sorted_and_unique() -> None:
    ruleset = rules("""
        rules:
          - id: one
            then: {tags: [zeta, alfa, alfa]}
          - id: two
            then: {tags: [midden, zeta]}
    """)
    assert ruleset.route(msg()).tags == ("alfa", "midden", "zeta")


def test_kind_fills_in_an_unknown_kind_but_never_overrides_the_citizen() -> None:
    ruleset = rules("""
        rules:
          - id: first
            when: {words: [lamp]}
            then: {kind: report}
          - id: second
            when: {words: [lamp]}
            then: {kind: question}
    """)
    assert ruleset.route(msg("lamp")).kind == "report"
    assert ruleset.route(msg("lamp", kind="suggestion")).kind == "suggestion"
    assert ruleset.route(msg("niets", kind="question")).kind == "question"
    assert ruleset.route(msg("niets")).kind is None


def test_stop_ends_evaluation_and_the_default_takes_the_message() -> None:
    ruleset = rules("""
        rules:
          - id: auto-reply
            when: {subject_words: [automatisch antwoord]}
            then: {tags: [automatisch], priority: low}
            stop: true
          - id: waste
            when: {words: [afval]}
            then: {department: environment}
          - id: always-tag
            always: true
            then: {tags: [gezien]}
    """)
    d = ruleset.route(msg("over afval", subject="Automatisch antwoord: afval"))
    assert d.fired == ("auto-reply",)
    assert d.department == "front-desk"
    assert d.defaulted is True
    assert d.tags == ("automatisch",)
    normal = ruleset.route(msg("over afval", subject="Vraag"))
    assert normal.fired == ("waste", "always-tag")


def test_a_skipped_stop_rule_does_not_stop_anything() -> None:
    ruleset = rules("""
        rules:
          - id: waste
            when: {words: [afval]}
            then: {department: environment}
          - id: stopper
            when: {words: [afval]}
            then: {tags: [nooit]}
            stop: true
          - id: always-tag
            always: true
            then: {tags: [gezien]}
    """)
    d = ruleset.route(msg("afval"))
    assert d.fired == ("waste", "always-tag")
    assert d.tags == ("gezien",)


def test_the_default_department_catches_the_rest() -> None:
    d = rules(ORDERED).route(msg("openingsuren gemeentehuis"))
    assert d == Decision(
        department="front-desk",
        kind=None,
        priority="normal",
        tags=(),
        fired=(),
        defaulted=True,
    )


def test_a_default_in_the_file_wins_over_the_one_passed_in() -> None:
    ruleset = rules("default_department: civil-affairs\nrules: []\n")
    assert ruleset.default_department == "civil-affairs"
    assert ruleset.route(msg("iets")).department == "civil-affairs"


def test_the_message_kind_passes_through_when_no_rule_sets_one() -> None:
    assert rules(ORDERED).route(msg("niets", kind="compliment")).kind == "compliment"


def test_rule_ids_and_length_follow_the_file() -> None:
    ruleset = rules(ORDERED)
    assert ruleset.rule_ids == ("tag-early", "lights", "waste", "urgent", "late-tag")
    assert len(ruleset) == 5
    assert [rule.line for rule in ruleset.rules] == [3, 6, 9, 12, 16]


def test_departments_are_not_checked_when_none_are_given() -> None:
    doc = load_yaml_text("rules:\n  - id: r\n    then: {department: anything}\n", "routing.yaml")
    ruleset = compile_rules(doc.data, default_department="elsewhere")
    assert ruleset.route(msg()).department == "anything"


# --- explain ------------------------------------------------------------------------------------


def test_explain_gives_the_same_decision_as_route() -> None:
    ruleset = rules(ORDERED)
    for text in ("lamp", "gevaarlijk afval", "afval lamp", "niets"):
        assert ruleset.explain(msg(text)).decision == ruleset.route(msg(text))


def test_explain_has_one_entry_per_rule_with_matched_and_applied() -> None:
    explanation = rules(ORDERED).explain(msg("lamp en gevaarlijk afval"))
    states = [(t.rule_id, t.matched, t.applied) for t in explanation.rules]
    assert states == [
        ("tag-early", True, True),
        ("lights", True, True),
        ("waste", True, False),
        ("urgent", True, True),
        ("late-tag", True, False),
    ]
    assert explanation.decided_by == "lights"


def test_explain_names_the_word_that_matched_and_the_prefix() -> None:
    ruleset = one_rule('{words: ["lamp*", straatlamp]}')
    trace = ruleset.explain(msg("De lampen branden niet")).rules[0]
    assert trace.reasons[0] == "words: matched 'lampen' (prefix 'lamp')"


def test_explain_says_why_a_condition_failed() -> None:
    ruleset = one_rule("{channel: [webform, app], words: [afval]}")
    trace = ruleset.explain(msg("straatlamp", channel="email")).rules[0]
    assert not trace.matched
    assert trace.reasons == (
        "channel: 'email' is not one of webform, app",
        "words: none of afval found in the subject and text",
    )


def test_explain_says_a_department_was_already_decided() -> None:
    explanation = rules(ORDERED).explain(msg("gevaarlijk afval"))
    by_id = {t.rule_id: t for t in explanation.rules}
    assert (
        "department: 'complaints' ignored, rule 'waste' already chose 'environment'"
        in by_id["urgent"].reasons
    )
    skipped = by_id["late-tag"]
    assert not skipped.matched
    lamp = rules(ORDERED).explain(msg("lamp")).rules[4]
    assert lamp.matched and not lamp.applied
    assert lamp.reasons[-1].startswith("not applied: rule 'lights' already chose the department")


def test_explain_shows_nested_blocks_indented() -> None:
    ruleset = one_rule("{any: [{words: [lawaai]}, {not: {language: nl}}]}")
    trace = ruleset.explain(msg("lawaai", language="nl")).rules[0]
    assert trace.reasons[:6] == (
        "any: 1 of 2 options hold (one must)",
        "  option 1: holds",
        "    words: matched 'lawaai'",
        "  option 2: does not hold",
        "    not: the conditions below hold, so 'not' fails",
        "      language: 'nl' is nl",
    )


def test_explain_of_an_unknown_language() -> None:
    trace = one_rule("{language: fr}").explain(msg()).rules[0]
    assert trace.reasons == ("language: unknown, so a language condition never matches",)


def test_explain_reports_a_stop() -> None:
    ruleset = rules("""
        rules:
          - id: stopper
            then: {tags: [a]}
            stop: true
          - id: after
            then: {tags: [b]}
    """)
    explanation = ruleset.explain(msg())
    assert explanation.rules[0].reasons[-1] == "stop: no later rule is looked at"
    assert explanation.rules[1].matched and not explanation.rules[1].applied
    assert explanation.rules[1].reasons[-1] == "not applied: rule 'stopper' stopped the evaluation"


def test_render_shows_decision_and_every_rule() -> None:
    text = rules(ORDERED).explain(msg("lamp en gevaarlijk afval")).render()
    lines = text.splitlines()
    assert lines[0] == "department: technical-service (chosen by rule 'lights')"
    assert "priority:   high" in lines
    assert "tags:       dringend, licht, verlichting" in lines
    assert "fired:      tag-early, lights, urgent" in lines
    assert "  + lights: fired" in lines
    assert "  ~ waste: matched, not applied" in lines
    assert "      department: 'technical-service' (this rule decides the department)" in lines


def test_render_of_a_defaulted_message() -> None:
    text = rules(ORDERED).explain(msg("openingsuren")).render()
    assert text.splitlines()[0] == "department: front-desk (default: no rule chose a department)"
    assert "  - lights: did not match" in text
    assert "fired:      (no rule)" in text


@pytest.mark.parametrize("channel", ["email", "sms", "whatsapp", "voice", "desk"])
def test_route_accepts_every_channel(channel: str) -> None:
    assert rules(ORDERED).route(msg("afval", channel=channel)).department == "environment"
