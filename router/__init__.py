"""The rules-based router: operator rules and a message in, a decision out; pure and fast."""

from router.rules import (
    CHANNELS,
    KINDS,
    PRIORITIES,
    Decision,
    Expectation,
    Explanation,
    RoutingInput,
    Rule,
    RuleError,
    RuleSet,
    RuleTestCase,
    RuleTestResult,
    RuleTrace,
    compile_rules,
    parse_rule_tests,
    run_rule_tests,
)

__all__ = [
    "CHANNELS",
    "KINDS",
    "PRIORITIES",
    "Decision",
    "Expectation",
    "Explanation",
    "RoutingInput",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleTestCase",
    "RuleTestResult",
    "RuleTrace",
    "compile_rules",
    "parse_rule_tests",
    "run_rule_tests",
]
