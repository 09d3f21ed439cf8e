"""Rule tests: the operator's example messages, their parser and runner, and the shipped config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from meldpunt.yamlsource import load_yaml_file, load_yaml_text
from router import (
    KINDS,
    RoutingInput,
    RuleError,
    RuleSet,
    RuleTestCase,
    compile_rules,
    parse_rule_tests,
    run_rule_tests,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
# The departments of the sample town, as config/meldpunt.yaml declares them.
SAMPLE_DEPARTMENTS = {
    "front-desk",
    "technical-service",
    "environment",
    "civil-affairs",
    "complaints",
}

RULES = """
rules:
  - id: waste
    when: {words: [afval]}
    then: {department: environment, tags: [afval]}
  - id: urgent
    always: true
    when: {words: [gevaarlijk]}
    then: {priority: high, tags: [dringend]}
"""


def ruleset() -> RuleSet:
    doc = load_yaml_text(RULES, "routing.yaml")
    return compile_rules(doc.data, line_of=doc.line_of, default_department="front-desk")


def cases(yaml_text: str) -> list[RuleTestCase]:
    doc = load_yaml_text(textwrap.dedent(yaml_text).lstrip("\n"), "routing.tests.yaml")
    return parse_rule_tests(doc.data, file="routing.tests.yaml", line_of=doc.line_of)


def problems(yaml_text: str) -> list[str]:
    with pytest.raises(RuleError) as caught:
        cases(yaml_text)
    return caught.value.problems


def test_parse_reads_messages_expectations_and_lines() -> None:
    parsed = cases("""
        tests:
          - name: afval
            message:
              channel: email
              kind: report
              subject: Afval
              text: niet opgehaald
              sender: An.Peeters@Example.BE
              has_location: true
              language: nl
            expect:
              department: environment
              kind: null
              tags: [afval]
              fired: []
          - name: minimal
            message: {channel: sms}
            expect: {priority: normal}
    """)
    first, second = parsed
    assert first.name == "afval"
    assert first.where == "routing.tests.yaml:2"
    assert first.message == RoutingInput(
        channel="email",
        kind="report",
        subject="Afval",
        text="niet opgehaald",
        sender_address="an.peeters@example.be",
        has_location=True,
        has_attachment=False,
        language="nl",
    )
    assert first.expect.department == "environment"
    assert first.expect.check_kind
    assert first.expect.kind is None
    assert first.expect.tags == ("afval",)
    assert first.expect.fired == ()
    assert second.message == RoutingInput(channel="sms")
    assert second.expect.fired is None
    assert not second.expect.check_kind
    assert second.line == 16


def test_invalid_test_files_report_every_problem_with_its_line() -> None:
    found = problems("""
        tests:
          - name: one
            message:
              channel: mail
              txt: hallo
            expect:
              departement: environment
          - name: two
            message: {kind: klacht}
            expect: {}
          - message: {channel: sms}
            expect: {priority: dringend, tags: []}
    """)
    assert found == [
        "routing.tests.yaml:4: test 'one': message.channel: unknown channel 'mail' "
        "(did you mean 'email'?); valid: email, sms, whatsapp, voice, messenger, telegram, "
        "webchat, webform, app, desk",
        "routing.tests.yaml:5: test 'one': message: unknown key 'txt' (did you mean 'text'?); "
        "known keys: channel, kind, subject, text, sender, has_location, has_attachment, language",
        "routing.tests.yaml:7: test 'one': expect: unknown key 'departement' "
        "(did you mean 'department'?); known keys: department, kind, priority, tags, fired, "
        "defaulted",
        "routing.tests.yaml:9: test 'two': message.channel: must be a channel, not empty; "
        "valid: email, sms, whatsapp, voice, messenger, telegram, webchat, webform, app, desk",
        "routing.tests.yaml:9: test 'two': message.kind: unknown kind 'klacht'; "
        f"valid: {', '.join(KINDS)}",
        "routing.tests.yaml:10: test 'two': expect: is empty; say at least which department "
        "you expect",
        "routing.tests.yaml:11: test #3: name: must be non-empty text, not empty",
        "routing.tests.yaml:12: test #3: expect.priority: unknown priority 'dringend'; "
        "valid: low, normal, high, urgent",
        "routing.tests.yaml:12: test #3: expect.tags: the list is empty",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "routing.tests.yaml: must be a mapping with a 'tests:' list, not empty"),
        ("tests: []\n", "routing.tests.yaml:1: tests: 'tests:' must be a non-empty list"),
        ("- name: a\n", "routing.tests.yaml:1: must be a mapping with a 'tests:' list, not a list"),
    ],
)
def test_a_test_file_without_tests(text: str, expected: str) -> None:
    assert problems(text)[0] == expected


def test_runner_passes_and_fails_with_expected_and_got() -> None:
    results = run_rule_tests(
        ruleset(),
        cases("""
            tests:
              - name: good
                message: {channel: email, text: gevaarlijk afval}
                expect:
                  department: environment
                  priority: high
                  tags: [dringend]
                  fired: [waste, urgent]
                  defaulted: false
              - name: wrong
                message: {channel: email, text: lamp kapot, kind: report}
                expect:
                  department: technical-service
                  kind: question
                  priority: urgent
                  tags: [afval, verlichting]
                  fired: [waste]
                  defaulted: false
              - name: unknown rule
                message: {channel: sms, text: afval}
                expect: {fired: [wast]}
        """),
    )
    good, wrong, unknown = results
    assert good.passed
    assert good.description == (
        "routing.tests.yaml:2: test 'good': department environment, as expected"
    )
    assert not wrong.passed
    assert wrong.decision.department == "front-desk"
    assert wrong.mismatches == (
        "department: expected 'technical-service', got 'front-desk'",
        "kind: expected 'question', got 'report'",
        "priority: expected 'urgent', got 'normal'",
        "tags: expected to include afval, verlichting, got no tags",
        "fired: expected waste, got no rule",
        "defaulted: expected False, got True",
    )
    assert wrong.description.startswith(
        "routing.tests.yaml:10: test 'wrong': department: expected 'technical-service', "
        "got 'front-desk'; kind:"
    )
    assert not unknown.passed
    assert unknown.mismatches == ("fired: no rule with id wast",)


def test_tags_only_need_to_be_included() -> None:
    (result,) = run_rule_tests(
        ruleset(),
        cases("""
            tests:
              - name: subset
                message: {channel: email, text: gevaarlijk afval}
                expect: {tags: [afval]}
        """),
    )
    assert result.passed
    assert result.decision.tags == ("afval", "dringend")


def test_an_empty_fired_list_means_no_rule_may_fire() -> None:
    (result,) = run_rule_tests(
        ruleset(),
        cases("""
            tests:
              - name: nothing expected
                message: {channel: email, text: afval}
                expect: {fired: []}
        """),
    )
    assert result.mismatches == ("fired: expected no rule, got waste",)


# --- the shipped sample configuration -----------------------------------------------------------


def shipped_rules() -> RuleSet:
    doc = load_yaml_file(CONFIG / "routing.yaml")
    return compile_rules(
        doc.data,
        file=doc.file,
        line_of=doc.line_of,
        departments=SAMPLE_DEPARTMENTS,
        default_department="front-desk",
    )


def shipped_cases() -> list[RuleTestCase]:
    doc = load_yaml_file(CONFIG / "routing.tests.yaml")
    return parse_rule_tests(doc.data, file=doc.file, line_of=doc.line_of)


def test_the_shipped_rules_pass_their_own_tests() -> None:
    results = run_rule_tests(shipped_rules(), shipped_cases())
    failures = [r.description for r in results if not r.passed]
    assert failures == []
    assert len(results) >= 12


def test_the_shipped_tests_cover_every_rule_and_the_default() -> None:
    rules = shipped_rules()
    results = run_rule_tests(rules, shipped_cases())
    fired = {rule_id for r in results for rule_id in r.decision.fired}
    assert fired == set(rules.rule_ids)
    assert any(r.decision.defaulted for r in results)
    assert {r.decision.department for r in results} == SAMPLE_DEPARTMENTS


def test_the_shipped_rules_use_the_sample_departments() -> None:
    rules = shipped_rules()
    assert rules.default_department == "front-desk"
    assert {rule.department for rule in rules.rules} - {None} <= SAMPLE_DEPARTMENTS


def test_the_shipped_rules_agree_with_the_town_settings() -> None:
    doc = load_yaml_file(CONFIG / "meldpunt.yaml")
    assert isinstance(doc.data, dict)
    departments = {d["id"] for d in doc.data["departments"]}
    assert departments == SAMPLE_DEPARTMENTS
    assert doc.data["default_department"] == "front-desk"
