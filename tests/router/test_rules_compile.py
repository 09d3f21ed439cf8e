"""Rule validation: every problem reported at once, each with file, rule and exact line."""

from __future__ import annotations

import textwrap

import pytest

from meldpunt.yamlsource import load_yaml_text
from router import RuleError, compile_rules

DEPARTMENTS = {"front-desk", "technical-service", "environment", "civil-affairs", "complaints"}


def problems(yaml_text: str, *, default: str | None = "front-desk") -> list[str]:
    """Compile ``yaml_text`` (dedented; line 1 is its first line) and return the problems."""
    doc = load_yaml_text(textwrap.dedent(yaml_text).lstrip("\n"), "routing.yaml")
    with pytest.raises(RuleError) as caught:
        compile_rules(
            doc.data,
            file="routing.yaml",
            line_of=doc.line_of,
            departments=DEPARTMENTS,
            default_department=default,
        )
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def only(yaml_text: str, **kwargs: str | None) -> str:
    found = problems(yaml_text, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_typo_in_an_action_key_suggests_the_close_match() -> None:
    assert only("""
        rules:
          - id: afval
            when:
              words: [afval]
            then:
              depatment: environment
    """) == (
        "routing.yaml:6: rule 'afval': then: unknown key 'depatment' "
        "(did you mean 'department'?); known keys: department, kind, priority, tags"
    )


def test_typo_in_a_condition_key() -> None:
    assert only("""
        rules:
          - id: afval
            when:
              channel: email
              wrods: [afval]
            then: {department: environment}
    """).startswith(
        "routing.yaml:5: rule 'afval': when: unknown key 'wrods' (did you mean 'words'?)"
    )


def test_misplaced_keys_say_where_they_belong() -> None:
    found = problems("""
        rules:
          - id: afval
            words: [afval]
            when:
              department: environment
            then:
              has_location: true
              tags: [afval]
              stop: true
    """)
    assert found == [
        "routing.yaml:3: rule 'afval': unknown key 'words' (a condition: put it under 'when:')",
        "routing.yaml:5: rule 'afval': when: unknown key 'department' "
        "(an action: put it under 'then:')",
        "routing.yaml:7: rule 'afval': then: unknown key 'has_location' "
        "(a condition: put it under 'when:')",
        "routing.yaml:9: rule 'afval': then: unknown key 'stop' "
        "(it belongs to the rule itself, next to 'id')",
    ]


def test_unknown_department_lists_the_valid_ones() -> None:
    assert only("""
        rules:
          - id: afval
            when: {words: [afval]}
            then:
              tags: [afval]
              department: milieu
    """) == (
        "routing.yaml:6: rule 'afval': then.department: unknown department 'milieu'; "
        "valid: civil-affairs, complaints, environment, front-desk, technical-service"
    )


def test_unknown_channel_kind_and_priority() -> None:
    found = problems("""
        rules:
          - id: r
            when:
              channel:
                - email
                - mail
              kind: klacht
            then:
              priority: hoog
              kind: raport
    """)
    assert found == [
        "routing.yaml:6: rule 'r': when.channel: unknown channel 'mail' (did you mean 'email'?); "
        "valid: email, sms, whatsapp, voice, messenger, telegram, webchat, webform, app, desk",
        "routing.yaml:7: rule 'r': when.kind: unknown kind 'klacht'; "
        "valid: report, question, suggestion, complaint, compliment",
        "routing.yaml:9: rule 'r': then.priority: unknown priority 'hoog'; "
        "valid: low, normal, high, urgent",
        "routing.yaml:10: rule 'r': then.kind: unknown kind 'raport' (did you mean 'report'?); "
        "valid: report, question, suggestion, complaint, compliment",
    ]


def test_bad_regex_is_reported_on_its_own_line() -> None:
    message = only(r"""
        rules:
          - id: r
            when:
              regex:
                - '^ok$'
                - 'put(ten'
            then: {department: technical-service}
    """)
    assert message.startswith(
        "routing.yaml:6: rule 'r': when.regex: 'put(ten' is not a valid regular expression: "
        "missing ), unterminated subpattern"
    )


def test_a_regex_that_matches_empty_text_is_refused() -> None:
    assert only("""
        rules:
          - id: r
            when: {regex: 'lamp|'}
            then: {department: technical-service}
    """) == (
        "routing.yaml:3: rule 'r': when.regex: 'lamp|' matches empty text, "
        "so it matches every message"
    )


def test_empty_words_list() -> None:
    assert (
        only("""
        rules:
          - id: r
            when:
              words: []
            then: {department: technical-service}
    """)
        == "routing.yaml:4: rule 'r': when.words: the list is empty"
    )


def test_unusable_words_are_reported_one_by_one() -> None:
    found = problems("""
        rules:
          - id: r
            when:
              words:
                - lamp*
                - str*at
                - "*"
            then: {department: technical-service}
    """)
    assert [p.split(": ")[0] for p in found] == ["routing.yaml:6", "routing.yaml:7"]
    assert "'str*at': '*' may only stand at the very start or end" in found[0]
    assert "'*' has no letters or digits to match" in found[1]


def test_numbers_are_accepted_as_words() -> None:
    doc = load_yaml_text(
        "rules:\n  - id: r\n    when: {words: [112]}\n    then: {tags: [nood]}\n", "f"
    )
    ruleset = compile_rules(doc.data, default_department="front-desk")
    assert ruleset.rule_ids == ("r",)


def test_duplicate_ids_point_at_both_lines() -> None:
    assert only("""
        rules:
          - id: afval
            then: {department: environment}
          - id: lamp
            then: {department: technical-service}
          - id: afval
            then: {department: environment}
    """) == (
        "routing.yaml:6: rule 'afval': id: duplicate id 'afval' (first used on line 2); "
        "ids must be unique"
    )


def test_missing_and_malformed_ids_use_the_rule_number() -> None:
    found = problems("""
        rules:
          - when: {words: [a]}
            then: {tags: [a]}
          - id: Straat Lampen
            then: {tags: [a]}
          - id: 12
            then: {tags: [a]}
    """)
    assert found == [
        "routing.yaml:2: rule #1: needs an 'id' (a short unique name such as 'street-lights')",
        "routing.yaml:4: rule 'Straat Lampen': id: id 'Straat Lampen' must be lower-case letters, "
        "digits, '-' or '_' (e.g. 'street-lights')",
        "routing.yaml:6: rule #3: id: must be text, not the number 12",
    ]


def test_a_rule_without_actions() -> None:
    found = problems("""
        rules:
          - id: no-then
            when: {words: [a]}
          - id: empty-then
            when: {words: [a]}
            then: {}
    """)
    assert found == [
        "routing.yaml:2: rule 'no-then': has no actions: add 'then:' with department, kind, "
        "priority or tags",
        "routing.yaml:6: rule 'empty-then': then: has no actions: add 'then:' with department, "
        "kind, priority or tags",
    ]


def test_wrong_types() -> None:
    found = problems("""
        rules:
          - id: r
            always: ja
            when:
              has_location: "yes"
              channel: 5
              words: {afval: true}
              any: {words: [a]}
              not: [words]
            then:
              tags: Foto Locatie
    """)
    assert found == [
        "routing.yaml:3: rule 'r': always: must be true or false, not the text 'ja'",
        "routing.yaml:5: rule 'r': when.has_location: must be true or false, not the text 'yes'",
        "routing.yaml:6: rule 'r': when.channel: must be non-empty text or a list of texts, "
        "not the number 5",
        "routing.yaml:7: rule 'r': when.words: must be text or a list of texts, not a mapping",
        "routing.yaml:8: rule 'r': when.any: must be a non-empty list of condition blocks, "
        "not a mapping",
        "routing.yaml:9: rule 'r': when.not: must be a mapping of conditions, e.g. "
        "'words: [afval]', not a list",
        "routing.yaml:11: rule 'r': then.tags: tag 'Foto Locatie' must be lower-case letters, "
        "digits, '-' or '_' (e.g. 'foto-locatie')",
    ]


def test_problems_inside_nested_blocks_name_the_option() -> None:
    assert only("""
        rules:
          - id: r
            when:
              any:
                - words: [a]
                - channel: sms
                  language: nederlands
            then: {tags: [a]}
    """) == (
        "routing.yaml:7: rule 'r': when.any[2].language: 'nederlands' is not a language code "
        "such as 'nl' or 'fr'"
    )


def test_empty_blocks_are_refused() -> None:
    found = problems("""
        rules:
          - id: r
            when: {}
            then: {tags: [a]}
          - id: s
            when:
              any: []
            then: {tags: [a]}
    """)
    assert found == [
        "routing.yaml:3: rule 'r': when: has no conditions (leave 'when' out to match every "
        "message)",
        "routing.yaml:7: rule 's': when.any: must be a non-empty list of condition blocks, "
        "not empty",
    ]


def test_sender_domain_must_be_a_domain() -> None:
    found = problems("""
        rules:
          - id: r
            when:
              sender_domain:
                - "@wingene.be"
                - jan@wingene.be
                - wingene
            then: {tags: [a]}
    """)
    assert found == [
        "routing.yaml:6: rule 'r': when.sender_domain: 'jan@wingene.be' is an address, not a "
        "domain; use 'sender:' for addresses",
        "routing.yaml:7: rule 'r': when.sender_domain: 'wingene' is not a domain such as "
        "'wingene.be'",
    ]


def test_all_problems_are_reported_at_once_in_file_order() -> None:
    found = problems(
        """
        default_department: onthaal
        rulez: []
        rules:
          - id: a
            when: {channel: mail}
            then: {department: x}
          - not a rule
          - id: b
            when: {words: []}
            then: {priority: max}
        """,
        default=None,
    )
    assert [p.split(": ")[0] for p in found] == [
        "routing.yaml:1",
        "routing.yaml:2",
        "routing.yaml:5",
        "routing.yaml:6",
        "routing.yaml:7",
        "routing.yaml:9",
        "routing.yaml:10",
    ]
    assert found[0] == (
        "routing.yaml:1: default_department: unknown department 'onthaal'; "
        "valid: civil-affairs, complaints, environment, front-desk, technical-service"
    )
    assert found[1].startswith("routing.yaml:2: unknown key 'rulez' (did you mean 'rules'?)")
    assert found[4] == (
        "routing.yaml:7: rule #2: must be a mapping with 'id', 'when' and 'then', "
        "not the text 'not a rule'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "routing.yaml: the file is empty; it needs a 'rules:' list"),
        ("- id: a\n", "routing.yaml:1: must be a mapping with a 'rules:' list, not a list"),
        ("default_department: front-desk\n", "routing.yaml:1: 'rules:' is missing"),
        ("rules:\n  id: a\n", "routing.yaml:1: rules: must be a list of rules, not a mapping"),
    ],
)
def test_a_file_without_a_rules_list(text: str, expected: str) -> None:
    doc = load_yaml_text(text, "routing.yaml")
    with pytest.raises(RuleError) as caught:
        compile_rules(doc.data, file="routing.yaml", line_of=doc.line_of, default_department="x")
    assert caught.value.problems[0].startswith(expected)


def test_no_default_department_anywhere() -> None:
    assert only("rules: []\n", default=None) == (
        "routing.yaml:1: no default department: add 'default_department:' with a department id"
    )


def test_a_passed_default_that_is_not_a_department() -> None:
    assert only("rules: []\n", default="onthaal").startswith(
        "routing.yaml:1: default department 'onthaal' is not a department; valid: civil-affairs"
    )


def test_without_line_numbers_the_file_is_still_named() -> None:
    with pytest.raises(RuleError) as caught:
        compile_rules({"rules": [{"id": "r", "then": {"priority": "max"}}]}, default_department="x")
    assert caught.value.problems == [
        "routing.yaml: rule 'r': then.priority: unknown priority 'max'; "
        "valid: low, normal, high, urgent"
    ]
