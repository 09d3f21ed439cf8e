"""Routing rules: compile the operator's routing.yaml, then route and explain messages with it.

The router is pure: a compiled :class:`RuleSet` and a :class:`RoutingInput` go in, a
:class:`Decision` comes out, naming every rule that fired. Everything that can be checked or
compiled is done once by :func:`compile_rules`, which reports every problem in the file at once
with its file, rule and line. Rule tests (example messages with the outcome the operator expects)
are read and run here too, because they exercise exactly this code.
"""

from __future__ import annotations

import abc
import difflib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

# The parser behind ``re``: the only way to read what a pattern requires (see required_text).
from re import _constants as _sre_constants  # type: ignore[attr-defined]
from re import _parser as _sre_parser  # type: ignore[attr-defined]

from router.text import (
    WordEntry,
    WordMatcher,
    compile_words,
    normalise,
    normalised_words,
    padded,
    parse_word,
)

CHANNELS = (
    "email",
    "sms",
    "whatsapp",
    "voice",
    "messenger",
    "telegram",
    "webchat",
    "webform",
    "app",
    "desk",
)
KINDS = ("report", "question", "suggestion", "complaint", "compliment")
# Lowest first: the index is the rank used to keep the highest priority.
PRIORITIES = ("low", "normal", "high", "urgent")

LineOf = Callable[[Sequence[str | int]], int | None]
_Path = tuple[str | int, ...]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DOMAIN = re.compile(r"^[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)+$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")
_PHONE_PUNCTUATION = re.compile(r"[\s./()-]")

_RULE_KEYS = ("id", "description", "when", "then", "always", "stop")
_CONDITION_KEYS = (
    "channel",
    "kind",
    "words",
    "subject_words",
    "text_words",
    "regex",
    "sender",
    "sender_domain",
    "has_location",
    "has_attachment",
    "language",
    "any",
    "all",
    "not",
)
_ACTION_KEYS = ("department", "kind", "priority", "tags")
_TOP_KEYS = ("default_department", "rules")


class RuleError(Exception):
    """Routing rules or rule tests that cannot be used.

    Attributes:
        problems: Every problem found, each as ``file:line: rule 'id': message``.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """What the router may look at in a message; ingest fills it from the normalised message.

    ``sender_address`` is already normalised: a case-folded e-mail address, an E.164 phone
    number or a chat id.
    """

    channel: str
    kind: str | None = None
    subject: str = ""
    text: str = ""
    sender_address: str | None = None
    has_location: bool = False
    has_attachment: bool = False
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a message goes and how it is labelled.

    Attributes:
        department: The department that handles the message.
        kind: The message's own kind, or the one a rule filled in; None when still unknown.
        priority: One of low, normal, high, urgent; the highest any fired rule set, else normal.
        tags: Every tag a fired rule added, sorted, each once.
        fired: Ids of the rules that fired, in rule order.
        defaulted: True when no rule chose the department and the default department got it.
    """

    department: str
    kind: str | None
    priority: str
    tags: tuple[str, ...]
    fired: tuple[str, ...]
    defaulted: bool


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule dealt with one message.

    Attributes:
        rule_id: The rule's id.
        description: The rule's description, possibly empty.
        matched: Whether the rule's conditions held.
        applied: Whether its actions were applied (it fired).
        reasons: Plain-language lines; nested conditions are indented by two spaces per level.
    """

    rule_id: str
    description: str
    matched: bool
    applied: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision together with what every rule made of the message."""

    decision: Decision
    rules: tuple[RuleTrace, ...]
    decided_by: str | None

    def render(self) -> str:
        """Readable multi-line text, as ``meldpunt route --explain`` prints it."""
        d = self.decision
        if d.defaulted:
            department = f"{d.department} (default: no rule chose a department)"
        else:
            department = f"{d.department} (chosen by rule '{self.decided_by}')"
        lines = [
            f"department: {department}",
            f"kind:       {d.kind or '(unknown)'}",
            f"priority:   {d.priority}",
            f"tags:       {', '.join(d.tags) or '(none)'}",
            f"fired:      {', '.join(d.fired) or '(no rule)'}",
            "",
            "rules, in order (+ fired, ~ matched but not applied, - did not match):",
        ]
        for trace in self.rules:
            if trace.applied:
                mark, state = "+", "fired"
            elif trace.matched:
                mark, state = "~", "matched, not applied"
            else:
                mark, state = "-", "did not match"
            title = f"  {mark} {trace.rule_id}: {state}"
            if trace.description:
                title += f"  ({trace.description})"
            lines.append(title)
            lines.extend(f"      {reason}" for reason in trace.reasons)
        return "\n".join(lines)


# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message normalised once, so no condition does that work again."""

    channel: str
    kind: str | None
    subject: str
    text: str
    both: str
    words: frozenset[str]
    raw: str
    raw_ascii_lower: str | None
    sender: str | None
    domain: str | None
    has_location: bool
    has_attachment: bool
    language: str | None


def _prepare(msg: RoutingInput) -> _Prepared:
    subject_words = normalised_words(msg.subject)
    text_words = normalised_words(msg.text)
    subject = padded(subject_words)
    text = padded(text_words)
    sender = msg.sender_address.strip().casefold() if msg.sender_address else None
    domain = None
    if sender and "@" in sender:
        domain = sender.rpartition("@")[2] or None
    language = msg.language.strip().lower().replace("_", "-") if msg.language else None
    raw = f"{msg.subject}\n{msg.text}"
    return _Prepared(
        channel=msg.channel,
        kind=msg.kind or None,
        subject=subject,
        # The newline keeps a phrase from matching across the end of the subject.
        both=subject + "\n" + text,
        words=frozenset(subject_words + text_words),
        text=text,
        raw=raw,
        raw_ascii_lower=raw.lower() if raw.isascii() else None,
        sender=sender,
        domain=domain,
        has_location=msg.has_location,
        has_attachment=msg.has_attachment,
        language=language or None,
    )


def _listing(values: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(values[:limit])
    if len(values) > limit:
        shown += f", … ({len(values) - limit} more)"
    return shown


def _one_of(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else f"one of {_listing(values)}"


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


@dataclass(frozen=True, slots=True)
class _Triggers:
    """What a message must have at least one of for a condition to be able to hold: whole
    words, word beginnings, word endings, or sender domains (a domain also covers the domains
    below it). The router's index uses them to skip rules that cannot fire; it never decides a
    match, the condition itself still does."""

    exact: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    suffixes: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def __or__(self, other: _Triggers) -> _Triggers:
        return _Triggers(
            self.exact | other.exact,
            self.prefixes | other.prefixes,
            self.suffixes | other.suffixes,
            self.domains | other.domains,
        )


def _entry_triggers(entry: WordEntry) -> _Triggers | None:
    """What one word entry needs in a message's words; None for a part of a word ("*afval*")."""
    first, _, rest = entry.words.partition(" ")
    if rest:  # a phrase: its first word must be there (whole, or as a word ending)
        return (
            _Triggers(suffixes=frozenset([first]))
            if entry.starts_open
            else _Triggers(exact=frozenset([first]))
        )
    if entry.starts_open and entry.ends_open:
        return None
    if entry.ends_open:
        return _Triggers(prefixes=frozenset([first]))
    if entry.starts_open:
        return _Triggers(suffixes=frozenset([first]))
    return _Triggers(exact=frozenset([first]))


class _Condition(abc.ABC):
    """One compiled test on a message; ``trace`` says in words why it held or not."""

    __slots__ = ()

    def triggers(self) -> _Triggers | None:
        """Words the message must have for the condition to hold; None when it cannot say."""
        return None

    @abc.abstractmethod
    def holds(self, m: _Prepared) -> bool:
        """Whether the condition holds, as fast as possible."""

    @abc.abstractmethod
    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        """Whether the condition holds, and the reasons in plain language."""


@dataclass(frozen=True, slots=True)
class _Channel(_Condition):
    values: tuple[str, ...]

    def holds(self, m: _Prepared) -> bool:
        return m.channel in self.values

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = self.holds(m)
        verb = "is" if ok else "is not"
        return ok, [f"channel: '{m.channel}' {verb} {_one_of(self.values)}"]


@dataclass(frozen=True, slots=True)
class _Kind(_Condition):
    values: tuple[str, ...]

    def holds(self, m: _Prepared) -> bool:
        return m.kind in self.values

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = self.holds(m)
        if m.kind is None:
            return ok, [f"kind: unknown, so not {_one_of(self.values)}"]
        verb = "is" if ok else "is not"
        return ok, [f"kind: '{m.kind}' {verb} {_one_of(self.values)}"]


_WORD_SCOPES = {
    "words": "subject and text",
    "subject_words": "subject",
    "text_words": "text",
}


@dataclass(frozen=True, slots=True)
class _Words(_Condition):
    key: str
    matcher: WordMatcher

    def _target(self, m: _Prepared) -> str:
        if self.key == "subject_words":
            return m.subject
        if self.key == "text_words":
            return m.text
        return m.both

    def holds(self, m: _Prepared) -> bool:
        if self.key == "words":  # the common case, and the words of both are already known
            return self.matcher.found_in(m.both, m.words)
        return self.matcher.found_in(self._target(m))

    def triggers(self) -> _Triggers | None:
        # The index looks at the words of subject and text together, a superset of either.
        found = _Triggers()
        for entry in self.matcher.entries:
            one = _entry_triggers(entry)
            if one is None:
                return None
            found |= one
        return found

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        hits = self.matcher.hits(self._target(m))
        if not hits:
            written = [entry.written for entry in self.matcher.entries]
            where = _WORD_SCOPES[self.key]
            return False, [f"{self.key}: none of {_listing(written)} found in the {where}"]
        seen: list[str] = []
        for found, entry in hits:
            shown = f"'{found}'" if found == entry.words else f"'{found}' ({entry.describe()})"
            if shown not in seen:
                seen.append(shown)
        return True, [f"{self.key}: matched {_listing(seen, limit=5)}"]


def required_text(pattern: re.Pattern[str]) -> str | None:
    """Plain ASCII text, lower case, that every match of ``pattern`` contains; None if unknown.

    A regular expression that ignores capitals is slow to search (there is no fast scan for its
    first letters), and most messages do not contain what it looks for. A run of plain
    characters in the pattern's top-level sequence ("dossier" and "nr" in
    ``\\bdossier\\s*nr\\d+``) is in every match; the longest one is returned, so that a text
    without it can skip the search.
    """
    try:
        parsed = _sre_parser.parse(pattern.pattern, pattern.flags)
    except Exception:  # a private module: should it ever change, only the shortcut is lost
        return None
    best = run = ""
    for op, value in parsed:
        # With capitals ignored, "s" also matches the long "ſ" and "k" the Kelvin sign, which
        # lower() does not turn into "s" and "k": the shortcut is for ASCII text only, and so
        # only ASCII characters of the pattern count ("ſ" in a pattern matches an ASCII "s").
        if op is _sre_constants.LITERAL and value < 128:
            run += chr(value).lower()
            if len(run) > len(best):
                best = run
        else:
            run = ""
    return best or None


@dataclass(frozen=True, slots=True)
class _Regex(_Condition):
    patterns: tuple[re.Pattern[str], ...]
    # Per pattern, text every match contains (see required_text), to skip hopeless searches.
    needles: tuple[str | None, ...]

    def holds(self, m: _Prepared) -> bool:
        lowered = m.raw_ascii_lower
        for pattern, needle in zip(self.patterns, self.needles, strict=True):
            if lowered is not None and needle is not None and needle not in lowered:
                continue
            if pattern.search(m.raw):
                return True
        return False

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        for pattern in self.patterns:
            match = pattern.search(m.raw)
            if match:
                found = match.group(0).replace("\n", " ")
                if len(found) > 60:
                    found = found[:57] + "..."
                return True, [f"regex: '{pattern.pattern}' matched '{found}'"]
        shown = [f"'{p.pattern}'" for p in self.patterns]
        return False, [f"regex: no match for {_listing(shown)} in the subject and text"]


@dataclass(frozen=True, slots=True)
class _Sender(_Condition):
    values: tuple[str, ...]

    def holds(self, m: _Prepared) -> bool:
        return m.sender in self.values

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = self.holds(m)
        if m.sender is None:
            return ok, ["sender: unknown, so it does not match"]
        verb = "is" if ok else "is not"
        return ok, [f"sender: '{m.sender}' {verb} {_one_of(self.values)}"]


@dataclass(frozen=True, slots=True)
class _SenderDomain(_Condition):
    values: tuple[str, ...]
    suffixes: tuple[str, ...]

    def holds(self, m: _Prepared) -> bool:
        domain = m.domain
        return domain is not None and (domain in self.values or domain.endswith(self.suffixes))

    def triggers(self) -> _Triggers | None:
        return _Triggers(domains=frozenset(self.values))

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = self.holds(m)
        if m.domain is None:
            return ok, ["sender_domain: the sender has no e-mail address, so it does not match"]
        verb = "is" if ok else "is not"
        return ok, [f"sender_domain: '{m.domain}' {verb} {_one_of(self.values)} (or below it)"]


@dataclass(frozen=True, slots=True)
class _HasLocation(_Condition):
    wanted: bool

    def holds(self, m: _Prepared) -> bool:
        return m.has_location is self.wanted

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        has = "has a location" if m.has_location else "has no location"
        want = "yes" if self.wanted else "no"
        return self.holds(m), [f"has_location: the message {has} (rule wants: {want})"]


@dataclass(frozen=True, slots=True)
class _HasAttachment(_Condition):
    wanted: bool

    def holds(self, m: _Prepared) -> bool:
        return m.has_attachment is self.wanted

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        has = "has an attachment" if m.has_attachment else "has no attachment"
        want = "yes" if self.wanted else "no"
        return self.holds(m), [f"has_attachment: the message {has} (rule wants: {want})"]


@dataclass(frozen=True, slots=True)
class _Language(_Condition):
    values: tuple[str, ...]
    prefixes: tuple[str, ...]

    def holds(self, m: _Prepared) -> bool:
        language = m.language
        # A message in an unknown language must never be routed as if it were in one.
        return language is not None and (
            language in self.values or language.startswith(self.prefixes)
        )

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = self.holds(m)
        if m.language is None:
            return ok, ["language: unknown, so a language condition never matches"]
        verb = "is" if ok else "is not"
        return ok, [f"language: '{m.language}' {verb} {_one_of(self.values)}"]


@dataclass(frozen=True, slots=True)
class _Block(_Condition):
    """Conditions listed together: all of them must hold."""

    conditions: tuple[_Condition, ...]

    def holds(self, m: _Prepared) -> bool:
        # A plain loop: a generator costs more than one or two conditions do.
        for condition in self.conditions:  # noqa: SIM110
            if not condition.holds(m):
                return False
        return True

    def triggers(self) -> _Triggers | None:
        # Every condition must hold, so one condition's triggers are enough: take the first.
        for condition in self.conditions:
            found = condition.triggers()
            if found is not None:
                return found
        return None

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        ok = True
        reasons: list[str] = []
        # No short-cut: an explanation shows every condition, also after one failed.
        for condition in self.conditions:
            held, lines = condition.trace(m)
            ok = ok and held
            reasons.extend(lines)
        return ok, reasons


@dataclass(frozen=True, slots=True)
class _AnyOf(_Condition):
    blocks: tuple[_Block, ...]

    def holds(self, m: _Prepared) -> bool:
        return any(b.holds(m) for b in self.blocks)

    def triggers(self) -> _Triggers | None:
        # Any block may hold: only when each can say what it needs, together they can.
        found = _Triggers()
        for block in self.blocks:
            one = block.triggers()
            if one is None:
                return None
            found |= one
        return found

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        return _trace_options("any", self.blocks, m, lambda held: held >= 1)


@dataclass(frozen=True, slots=True)
class _AllOf(_Condition):
    blocks: tuple[_Block, ...]

    def holds(self, m: _Prepared) -> bool:
        return all(b.holds(m) for b in self.blocks)

    def triggers(self) -> _Triggers | None:
        for block in self.blocks:
            found = block.triggers()
            if found is not None:
                return found
        return None

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        return _trace_options("all", self.blocks, m, lambda held: held == len(self.blocks))


def _trace_options(
    key: str, blocks: Sequence[_Block], m: _Prepared, verdict: Callable[[int], bool]
) -> tuple[bool, list[str]]:
    nested: list[str] = []
    held = 0
    for number, block in enumerate(blocks, start=1):
        ok, lines = block.trace(m)
        held += ok
        nested.append(f"option {number}: {'holds' if ok else 'does not hold'}")
        nested.extend(_indent(lines))
    ok = verdict(held)
    need = "one" if key == "any" else "every one"
    head = f"{key}: {held} of {len(blocks)} options hold ({need} must)"
    return ok, [head, *_indent(nested)]


@dataclass(frozen=True, slots=True)
class _Not(_Condition):
    block: _Block

    def holds(self, m: _Prepared) -> bool:
        return not self.block.holds(m)

    def trace(self, m: _Prepared) -> tuple[bool, list[str]]:
        inner, lines = self.block.trace(m)
        if inner:
            head = "not: the conditions below hold, so 'not' fails"
        else:
            head = "not: the conditions below do not hold, so 'not' holds"
        return not inner, [head, *_indent(lines)]


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: conditions (None matches every message) and actions.

    Attributes:
        id: The rule's unique id.
        description: What the rule is for, as the operator wrote it.
        line: The line of the rule in its file, when known.
        department: Department to route to, if the rule chooses one.
        kind: Kind to fill in when the message has none.
        priority: Priority to raise the message to.
        tags: Tags to add.
        always: Apply the rule's kind, priority and tags even after the department is decided.
        stop: End evaluation when this rule fires.
    """

    id: str
    description: str
    line: int | None
    when: _Block | None
    department: str | None
    kind: str | None
    priority: str | None
    tags: tuple[str, ...]
    always: bool
    stop: bool


@dataclass(slots=True)
class _Outcome:
    """The decision as it builds up while rules fire; the one place the semantics live."""

    kind: str | None
    department: str | None = None
    decided_by: str | None = None
    kind_by: str | None = None
    rank: int = -1
    ranked_by: str | None = None
    tags: set[str] = field(default_factory=set)
    fired: list[str] = field(default_factory=list)
    stopped_by: str | None = None

    def skips(self, rule: Rule) -> bool:
        """Whether the rule may not fire, whatever its conditions say."""
        if self.stopped_by is not None:
            return True
        return self.department is not None and not rule.always

    def skip_reason(self) -> str:
        if self.stopped_by is not None:
            return f"not applied: rule '{self.stopped_by}' stopped the evaluation"
        return (
            f"not applied: rule '{self.decided_by}' already chose the department "
            "(add 'always: true' to apply this rule's kind, priority and tags anyway)"
        )

    def apply(self, rule: Rule, notes: list[str] | None) -> None:
        """Fire ``rule``; when ``notes`` is given, say there what each action did."""
        self.fired.append(rule.id)
        say = notes.append if notes is not None else None
        if rule.department is not None:
            if self.department is None:
                self.department, self.decided_by = rule.department, rule.id
                if say:
                    say(f"department: '{rule.department}' (this rule decides the department)")
            elif say:
                say(
                    f"department: '{rule.department}' ignored, rule '{self.decided_by}' "
                    f"already chose '{self.department}'"
                )
        if rule.kind is not None:
            if self.kind is None:
                self.kind, self.kind_by = rule.kind, rule.id
                if say:
                    say(f"kind: set to '{rule.kind}'")
            elif say:
                source = (
                    "the message itself says"
                    if self.kind_by is None
                    else f"rule '{self.kind_by}' already set"
                )
                say(f"kind: '{rule.kind}' ignored, {source} '{self.kind}'")
        if rule.priority is not None:
            rank = PRIORITIES.index(rule.priority)
            if rank > self.rank:
                self.rank, self.ranked_by = rank, rule.id
                if say:
                    say(f"priority: '{rule.priority}'")
            elif say:
                say(
                    f"priority: '{rule.priority}' ignored, rule '{self.ranked_by}' already "
                    f"set '{PRIORITIES[self.rank]}' (the highest priority wins)"
                )
        if rule.tags:
            self.tags.update(rule.tags)
            if say:
                say(f"tags: add {', '.join(rule.tags)}")
        if rule.stop:
            self.stopped_by = rule.id
            if say:
                say("stop: no later rule is looked at")

    def decision(self, default_department: str) -> Decision:
        return Decision(
            department=self.department or default_department,
            kind=self.kind,
            priority=PRIORITIES[self.rank] if self.rank >= 0 else "normal",
            tags=tuple(sorted(self.tags)),
            fired=tuple(self.fired),
            defaulted=self.department is None,
        )


class _Index:
    """Which rules a message's words can make fire, so ``route`` looks at only those.

    Most rules of a big rule set are about words ("lamp*", "riolering"), and one message names
    a few topics, so most rules cannot fire for it. A rule whose conditions need one of some
    words is filed under those words; every other rule (no conditions, only a channel, a
    regular expression, a part of a word) is always looked at. Rules that need one of some
    sender domains are filed under those domains. Rules are still evaluated in their order, and
    skipping one that cannot hold changes nothing.
    """

    __slots__ = (
        "always",
        "domains",
        "exact",
        "known",
        "prefix_lengths",
        "prefixes",
        "suffix_lengths",
        "suffixes",
    )

    def __init__(self, rules: Sequence[Rule]) -> None:
        always: list[int] = []
        exact: dict[str, list[int]] = {}
        prefixes: dict[str, list[int]] = {}
        suffixes: dict[str, list[int]] = {}
        domains: dict[str, list[int]] = {}
        for number, rule in enumerate(rules):
            triggers = rule.when.triggers() if rule.when is not None else None
            if triggers is None:
                always.append(number)
                continue
            for table, words in (
                (exact, triggers.exact),
                (prefixes, triggers.prefixes),
                (suffixes, triggers.suffixes),
                (domains, triggers.domains),
            ):
                for word in words:
                    table.setdefault(word, []).append(number)
        self.always = frozenset(always)
        self.exact = exact
        self.prefixes = prefixes
        self.prefix_lengths = tuple(sorted({len(p) for p in prefixes}))
        self.suffixes = suffixes
        self.suffix_lengths = tuple(sorted({len(p) for p in suffixes}))
        self.domains = domains
        self.known: dict[str, tuple[int, ...]] = {}

    def candidates(self, words: frozenset[str], domain: str | None) -> list[int]:
        """The numbers of the rules that may fire for a text of these words from a sender at
        this domain, in rule order."""
        found = set(self.always)
        if domain is not None and self.domains:
            # "mail.wingene.be" is at or below "mail.wingene.be", "wingene.be" and "be".
            rest = domain
            while rest:
                found.update(self.domains.get(rest, ()))
                rest = rest.partition(".")[2]
        known = self.known
        for word in words:
            numbers = known.get(word)
            if numbers is None:
                numbers = self._for_word(word)
                if len(known) >= _WORDS_REMEMBERED:
                    known.clear()
                known[word] = numbers
            if numbers:
                found.update(numbers)
        return sorted(found)

    def _for_word(self, word: str) -> tuple[int, ...]:
        numbers = list(self.exact.get(word, ()))
        size = len(word)
        for length in self.prefix_lengths:
            if length > size:
                break
            numbers.extend(self.prefixes.get(word[:length], ()))
        for length in self.suffix_lengths:
            if length > size:
                break
            numbers.extend(self.suffixes.get(word[-length:], ()))
        return tuple(numbers)


# Citizens use the same words again and again: what each word triggers is remembered, up to
# this many words (then forgotten all at once, so odd input cannot grow it without end).
_WORDS_REMEMBERED = 100_000


class RuleSet:
    """Compiled routing rules; build one with :func:`compile_rules`."""

    __slots__ = ("_index", "_rules", "default_department", "departments", "file")

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        default_department: str,
        departments: frozenset[str] | None = None,
        file: str = "routing.yaml",
    ) -> None:
        self._rules = tuple(rules)
        self._index = _Index(self._rules)
        self.default_department = default_department
        self.departments = departments
        self.file = file

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self._rules)} rules from {self.file!r})"

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules, in evaluation order."""
        return self._rules

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rule ids, in evaluation order."""
        return tuple(rule.id for rule in self._rules)

    def route(self, msg: RoutingInput) -> Decision:
        """Decide department, kind, priority and tags for one message.

        Args:
            msg: The message, as ingest describes it.

        Returns:
            The decision, with the ids of the rules that fired.
        """
        m = _prepare(msg)
        outcome = _Outcome(kind=m.kind)
        rules = self._rules
        for number in self._index.candidates(m.words, m.domain):
            rule = rules[number]
            if outcome.stopped_by is not None:
                break
            if outcome.department is not None and not rule.always:
                continue  # outcome.skips(rule), written out: this loop is the router's hot path
            if rule.when is None or rule.when.holds(m):
                outcome.apply(rule, None)
        return outcome.decision(self.default_department)

    def explain(self, msg: RoutingInput) -> Explanation:
        """Route one message and say, rule by rule, why each did or did not fire.

        Args:
            msg: The message, as ingest describes it.

        Returns:
            The same decision :meth:`route` gives, plus a trace of every rule.
        """
        m = _prepare(msg)
        outcome = _Outcome(kind=m.kind)
        traces: list[RuleTrace] = []
        for rule in self._rules:
            if rule.when is None:
                matched, reasons = True, ["no conditions: every message matches"]
            else:
                matched, reasons = rule.when.trace(m)
            applied = False
            if matched:
                if outcome.skips(rule):
                    reasons.append(outcome.skip_reason())
                else:
                    outcome.apply(rule, reasons)
                    applied = True
            traces.append(
                RuleTrace(
                    rule_id=rule.id,
                    description=rule.description,
                    matched=matched,
                    applied=applied,
                    reasons=tuple(reasons),
                )
            )
        return Explanation(
            decision=outcome.decision(self.default_department),
            rules=tuple(traces),
            decided_by=outcome.decided_by,
        )


# --- reading operator YAML -----------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _suggest(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _relative_label(path: _Path) -> str:
    label = ""
    for part in path:
        if isinstance(part, int):
            label += f"[{part + 1}]"
        else:
            label += f".{part}" if label else part
    return label


class _Problems:
    """Collects problems, each pointing at a file, a rule (or test) and a line."""

    def __init__(self, file: str, line_of: LineOf | None) -> None:
        self.file = file
        self.line_of = line_of
        self._found: list[tuple[int, str]] = []
        self.subject = ""
        self.base: _Path = ()

    @property
    def found(self) -> list[str]:
        """Every problem so far, in line order (problems without a line first)."""
        return [message for _, message in sorted(self._found, key=lambda item: item[0])]

    def line(self, path: _Path) -> int | None:
        return self.line_of(path) if self.line_of is not None else None

    def add(self, path: _Path, message: str, label: _Path | None = None) -> None:
        """Record a problem at the line of ``path``, labelled with ``label`` (default: path).

        The label leaves out a final list index: the message quotes the entry itself.
        """
        line = self.line(path)
        where = f"{self.file}:{line}" if line else self.file
        label = path if label is None else label
        rel = label[len(self.base) :] if label[: len(self.base)] == self.base else label
        if rel and isinstance(rel[-1], int):
            rel = rel[:-1]
        parts = [where]
        if self.subject:
            parts.append(self.subject)
        if rel:
            parts.append(_relative_label(rel))
        self._found.append((line or 0, ": ".join([*parts, message])))

    def unknown_key(self, path: _Path, key: str, known: Sequence[str], hint: str = "") -> None:
        if not hint:
            hint = _suggest(key, known) + f"; known keys: {', '.join(known)}"
        self.add((*path, key), f"unknown key '{key}'{hint}", label=path)

    def mapping(self, path: _Path, value: object, what: str) -> dict[str, object] | None:
        if isinstance(value, dict):
            return value
        self.add(path, f"must be {what}, not {_type_name(value)}")
        return None

    def text(self, path: _Path, value: object) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.add(path, f"must be non-empty text, not {_type_name(value)}")
        return None

    def flag(self, path: _Path, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        self.add(path, f"must be true or false, not {_type_name(value)}")
        return None

    def items(
        self, path: _Path, value: object, *, numbers: bool = False
    ) -> list[tuple[_Path, str]] | None:
        """One text or a non-empty list of texts, each with its own path (for its line)."""
        if isinstance(value, list):
            if not value:
                self.add(path, "the list is empty")
                return None
            pairs: list[tuple[_Path, object]] = [((*path, i), v) for i, v in enumerate(value)]
            what = "each entry must be non-empty text"
        elif isinstance(value, dict) or value is None:
            self.add(path, f"must be text or a list of texts, not {_type_name(value)}")
            return None
        else:
            pairs = [(path, value)]
            what = "must be non-empty text or a list of texts"
        result: list[tuple[_Path, str]] = []
        for item_path, item in pairs:
            if isinstance(item, str) and item.strip():
                result.append((item_path, item.strip()))
            elif numbers and isinstance(item, int) and not isinstance(item, bool):
                result.append((item_path, str(item)))
            else:
                self.add(item_path, f"{what}, not {_type_name(item)}")
        return result if len(result) == len(pairs) else None

    def choices(
        self, path: _Path, value: object, valid: Sequence[str], what: str
    ) -> tuple[str, ...] | None:
        items = self.items(path, value)
        if items is None:
            return None
        chosen: list[str] = []
        for item_path, item in items:
            if self.choice(item_path, item, valid, what) is not None and item not in chosen:
                chosen.append(item)
        return tuple(chosen) if len(chosen) == len({i for _, i in items}) else None

    def choice(self, path: _Path, value: object, valid: Sequence[str], what: str) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a {what}, not {_type_name(value)}; valid: {', '.join(valid)}")
            return None
        if value not in valid:
            hint = _suggest(value.lower(), valid)
            self.add(path, f"unknown {what} '{value}'{hint}; valid: {', '.join(valid)}")
            return None
        return value


_MISPLACED_IN_RULE = {
    **{key: " (a condition: put it under 'when:')" for key in _CONDITION_KEYS},
    **{key: " (an action: put it under 'then:')" for key in _ACTION_KEYS},
    "kind": " (put it under 'when:' to test the message's kind, or 'then:' to set it)",
}
_MISPLACED_IN_WHEN = {
    "department": " (an action: put it under 'then:')",
    "priority": " (an action: put it under 'then:')",
    "tags": " (an action: put it under 'then:')",
    "always": " (it belongs to the rule itself, next to 'id')",
    "stop": " (it belongs to the rule itself, next to 'id')",
}
_MISPLACED_IN_THEN = {
    **{key: " (a condition: put it under 'when:')" for key in _CONDITION_KEYS if key != "kind"},
    "always": " (it belongs to the rule itself, next to 'id')",
    "stop": " (it belongs to the rule itself, next to 'id')",
}


class _RuleCompiler:
    """Turns the plain data of routing.yaml into rules, reporting every problem on the way."""

    def __init__(self, problems: _Problems, departments: frozenset[str] | None) -> None:
        self.p = problems
        self.departments = departments
        self.conditions: dict[str, Callable[[_Path, object, str], _Condition | None]] = {
            "channel": self._channel,
            "kind": self._kind,
            "words": self._words,
            "subject_words": self._words,
            "text_words": self._words,
            "regex": self._regex,
            "sender": self._sender,
            "sender_domain": self._sender_domain,
            "has_location": self._has_location,
            "has_attachment": self._has_attachment,
            "language": self._language,
            "any": self._options,
            "all": self._options,
            "not": self._not,
        }

    def document(self, data: object, default_department: str | None) -> tuple[list[Rule], str]:
        p = self.p
        if data is None:
            p.add((), "the file is empty; it needs a 'rules:' list")
            return [], ""
        top = p.mapping((), data, "a mapping with a 'rules:' list")
        if top is None:
            return [], ""
        for key in top:
            if key not in _TOP_KEYS:
                p.unknown_key((), key, _TOP_KEYS)
        default = self._default(top, default_department)
        if "rules" not in top:
            p.add((), "'rules:' is missing; it holds the list of rules")
            return [], default
        raw_rules = top["rules"]
        if not isinstance(raw_rules, list):
            p.add(("rules",), f"must be a list of rules, not {_type_name(raw_rules)}")
            return [], default
        rules: list[Rule] = []
        first_line: dict[str, int | None] = {}
        for index, raw in enumerate(raw_rules):
            rule = self._rule(index, raw, first_line)
            if rule is not None:
                rules.append(rule)
        p.subject, p.base = "", ()
        return rules, default

    def _default(self, top: dict[str, object], passed: str | None) -> str:
        p = self.p
        path: _Path = ("default_department",)
        if "default_department" in top:
            value = p.text(path, top["default_department"])
            if value is None:
                return ""
        elif passed:
            value, path = passed, ()
        else:
            p.add((), "no default department: add 'default_department:' with a department id")
            return ""
        if self.departments is not None and value not in self.departments:
            if path:
                p.add(path, self._unknown_department(value))
            else:
                known = ", ".join(sorted(self.departments))
                p.add(path, f"default department '{value}' is not a department; valid: {known}")
        return value

    def _unknown_department(self, value: str) -> str:
        known = sorted(self.departments or ())
        hint = _suggest(value, known)
        return f"unknown department '{value}'{hint}; valid: {', '.join(known)}"

    def _rule(self, index: int, raw: object, first_line: dict[str, int | None]) -> Rule | None:
        p = self.p
        path: _Path = ("rules", index)
        p.base = path
        p.subject = f"rule #{index + 1}"
        item = p.mapping(path, raw, "a mapping with 'id', 'when' and 'then'")
        if item is None:
            return None
        rule_id = item.get("id")
        if isinstance(rule_id, str) and rule_id:
            p.subject = f"rule '{rule_id}'"
            if not _SLUG.match(rule_id):
                p.add(
                    (*path, "id"),
                    f"id '{rule_id}' must be lower-case letters, digits, '-' or '_' "
                    "(e.g. 'street-lights')",
                )
            if rule_id in first_line:
                seen = first_line[rule_id]
                at = f" (first used on line {seen})" if seen else ""
                p.add((*path, "id"), f"duplicate id '{rule_id}'{at}; ids must be unique")
            else:
                first_line[rule_id] = p.line(path)
        elif "id" not in item:
            p.add(path, "needs an 'id' (a short unique name such as 'street-lights')")
        else:
            p.add((*path, "id"), f"must be text, not {_type_name(rule_id)}")
        before = len(p.found)
        for key in item:
            if key not in _RULE_KEYS:
                p.unknown_key(path, key, _RULE_KEYS, _MISPLACED_IN_RULE.get(key, ""))
        description = ""
        if "description" in item:
            description = p.text((*path, "description"), item["description"]) or ""
        always = p.flag((*path, "always"), item["always"]) if "always" in item else False
        stop = p.flag((*path, "stop"), item["stop"]) if "stop" in item else False
        when = self._block((*path, "when"), item["when"]) if "when" in item else None
        actions = self._actions(path, item.get("then"), "then" in item)
        if len(p.found) > before or not isinstance(rule_id, str) or actions is None:
            return None
        department, kind, priority, tags = actions
        return Rule(
            id=rule_id,
            description=description,
            line=p.line(path),
            when=when,
            department=department,
            kind=kind,
            priority=priority,
            tags=tags,
            always=bool(always),
            stop=bool(stop),
        )

    def _actions(
        self, path: _Path, raw: object, present: bool
    ) -> tuple[str | None, str | None, str | None, tuple[str, ...]] | None:
        p = self.p
        no_actions = "has no actions: add 'then:' with department, kind, priority or tags"
        if not present or raw is None or raw == {}:
            p.add((*path, "then") if present else path, no_actions)
            return None
        then = p.mapping((*path, "then"), raw, "a mapping of actions (department, kind, ...)")
        if then is None:
            return None
        here: _Path = (*path, "then")
        ok = True
        for key in then:
            if key not in _ACTION_KEYS:
                p.unknown_key(here, key, _ACTION_KEYS, _MISPLACED_IN_THEN.get(key, ""))
                ok = False
        department = kind = priority = None
        tags: tuple[str, ...] = ()
        if "department" in then:
            department = p.text((*here, "department"), then["department"])
            if department is None:
                ok = False
            elif self.departments is not None and department not in self.departments:
                p.add((*here, "department"), self._unknown_department(department))
                ok = False
        if "kind" in then:
            kind = p.choice((*here, "kind"), then["kind"], KINDS, "kind")
            ok = ok and kind is not None
        if "priority" in then:
            priority = p.choice((*here, "priority"), then["priority"], PRIORITIES, "priority")
            ok = ok and priority is not None
        if "tags" in then:
            parsed = self._tags((*here, "tags"), then["tags"])
            ok = ok and parsed is not None
            tags = parsed or ()
        if ok and department is None and kind is None and priority is None and not tags:
            p.add(here, no_actions)
            ok = False
        return (department, kind, priority, tags) if ok else None

    def _tags(self, path: _Path, raw: object) -> tuple[str, ...] | None:
        items = self.p.items(path, raw)
        if items is None:
            return None
        tags: list[str] = []
        ok = True
        for item_path, tag in items:
            if _SLUG.match(tag):
                if tag not in tags:
                    tags.append(tag)
                continue
            ok = False
            better = normalise(tag).strip().replace(" ", "-")
            example = f" (e.g. '{better}')" if better else ""
            self.p.add(
                item_path, f"tag '{tag}' must be lower-case letters, digits, '-' or '_'{example}"
            )
        return tuple(tags) if ok else None

    def _block(self, path: _Path, raw: object) -> _Block | None:
        p = self.p
        block = p.mapping(path, raw, "a mapping of conditions, e.g. 'words: [afval]'")
        if block is None:
            return None
        if not block:
            p.add(path, "has no conditions (leave 'when' out to match every message)")
            return None
        conditions: list[_Condition] = []
        ok = True
        for key, value in block.items():
            parse = self.conditions.get(key)
            if parse is None:
                p.unknown_key(path, key, _CONDITION_KEYS, _MISPLACED_IN_WHEN.get(key, ""))
                ok = False
                continue
            condition = parse((*path, key), value, key)
            if condition is None:
                ok = False
            else:
                conditions.append(condition)
        return _Block(tuple(conditions)) if ok else None

    def _channel(self, path: _Path, raw: object, key: str) -> _Condition | None:
        values = self.p.choices(path, raw, CHANNELS, "channel")
        return _Channel(values) if values else None

    def _kind(self, path: _Path, raw: object, key: str) -> _Condition | None:
        values = self.p.choices(path, raw, KINDS, "kind")
        return _Kind(values) if values else None

    def _words(self, path: _Path, raw: object, key: str) -> _Condition | None:
        items = self.p.items(path, raw, numbers=True)
        if items is None:
            return None
        entries: list[WordEntry] = []
        for item_path, written in items:
            try:
                entries.append(parse_word(written))
            except ValueError as exc:
                self.p.add(item_path, str(exc))
        if len(entries) != len(items):
            return None
        return _Words(key, compile_words(entries))

    def _regex(self, path: _Path, raw: object, key: str) -> _Condition | None:
        items = self.p.items(path, raw)
        if items is None:
            return None
        patterns: list[re.Pattern[str]] = []
        for item_path, source in items:
            try:
                pattern = re.compile(source, re.IGNORECASE)
            except re.error as exc:
                self.p.add(item_path, f"'{source}' is not a valid regular expression: {exc}")
                continue
            if pattern.search("") is not None:
                self.p.add(item_path, f"'{source}' matches empty text, so it matches every message")
                continue
            patterns.append(pattern)
        if len(patterns) != len(items):
            return None
        return _Regex(tuple(patterns), tuple(required_text(p) for p in patterns))

    def _sender(self, path: _Path, raw: object, key: str) -> _Condition | None:
        items = self.p.items(path, raw)
        if items is None:
            return None
        values: list[str] = []
        for _, address in items:
            value = address.casefold()
            if value.startswith("+"):
                # Phone numbers arrive as E.164; let operators write them with spaces or dots.
                value = _PHONE_PUNCTUATION.sub("", value)
            values.append(value)
        return _Sender(tuple(dict.fromkeys(values)))

    def _sender_domain(self, path: _Path, raw: object, key: str) -> _Condition | None:
        items = self.p.items(path, raw)
        if items is None:
            return None
        values: list[str] = []
        for item_path, written in items:
            domain = written.casefold().removeprefix("@")
            if "@" in domain:
                self.p.add(
                    item_path,
                    f"'{written}' is an address, not a domain; use 'sender:' for addresses",
                )
            elif not _DOMAIN.match(domain):
                self.p.add(item_path, f"'{written}' is not a domain such as 'wingene.be'")
            else:
                values.append(domain)
        if len(values) != len(items):
            return None
        unique = tuple(dict.fromkeys(values))
        return _SenderDomain(unique, tuple("." + d for d in unique))

    def _has_location(self, path: _Path, raw: object, key: str) -> _Condition | None:
        wanted = self.p.flag(path, raw)
        return None if wanted is None else _HasLocation(wanted)

    def _has_attachment(self, path: _Path, raw: object, key: str) -> _Condition | None:
        wanted = self.p.flag(path, raw)
        return None if wanted is None else _HasAttachment(wanted)

    def _language(self, path: _Path, raw: object, key: str) -> _Condition | None:
        items = self.p.items(path, raw)
        if items is None:
            return None
        values: list[str] = []
        for item_path, written in items:
            code = written.lower().replace("_", "-")
            if _LANGUAGE.match(code):
                values.append(code)
            else:
                self.p.add(item_path, f"'{written}' is not a language code such as 'nl' or 'fr'")
        if len(values) != len(items):
            return None
        unique = tuple(dict.fromkeys(values))
        return _Language(unique, tuple(v + "-" for v in unique))

    def _options(self, path: _Path, raw: object, key: str) -> _Condition | None:
        if not isinstance(raw, list) or not raw:
            what = "empty" if raw == [] else _type_name(raw)
            self.p.add(path, f"must be a non-empty list of condition blocks, not {what}")
            return None
        blocks = [self._block((*path, i), item) for i, item in enumerate(raw)]
        if any(block is None for block in blocks):
            return None
        valid = tuple(block for block in blocks if block is not None)
        return _AnyOf(valid) if key == "any" else _AllOf(valid)

    def _not(self, path: _Path, raw: object, key: str) -> _Condition | None:
        block = self._block(path, raw)
        return None if block is None else _Not(block)


def compile_rules(
    data: object,
    *,
    file: str = "routing.yaml",
    line_of: LineOf | None = None,
    departments: Collection[str] | None = None,
    default_department: str | None = None,
) -> RuleSet:
    """Check and compile the plain data of a routing rules file.

    Args:
        data: The file's content as plain Python values (safe YAML).
        file: The file name used in problem messages.
        line_of: Gives the 1-based line of a path such as ``("rules", 3, "when", "words")``.
        departments: The valid department ids; None skips that check.
        default_department: Used unless the file sets ``default_department:`` itself.

    Returns:
        The compiled rules.

    Raises:
        RuleError: With every problem in the file, not just the first.
    """
    problems = _Problems(file, line_of)
    known = frozenset(departments) if departments is not None else None
    compiler = _RuleCompiler(problems, known)
    rules, default = compiler.document(data, default_department)
    if problems.found:
        raise RuleError(problems.found)
    return RuleSet(rules, default_department=default, departments=known, file=file)


# --- rule tests ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expectation:
    """What an operator expects for one example message; None means "not checked"."""

    department: str | None = None
    kind: str | None = None
    check_kind: bool = False
    priority: str | None = None
    tags: tuple[str, ...] = ()
    fired: tuple[str, ...] | None = None
    defaulted: bool | None = None


@dataclass(frozen=True, slots=True)
class RuleTestCase:
    """One example message from a rule tests file, with what it should give."""

    name: str
    message: RoutingInput
    expect: Expectation
    file: str
    line: int | None

    @property
    def where(self) -> str:
        """``file:line`` of the test, or the file alone when the line is unknown."""
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """The outcome of one rule test: the decision and every way it differs from the expectation."""

    case: RuleTestCase
    decision: Decision
    mismatches: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when the decision meets every expectation."""
        return not self.mismatches

    @property
    def description(self) -> str:
        """One line naming the test's file:line, with expected against got when it failed."""
        head = f"{self.case.where}: test '{self.case.name}'"
        if self.passed:
            return f"{head}: department {self.decision.department}, as expected"
        return f"{head}: {'; '.join(self.mismatches)}"


_TEST_KEYS = ("name", "message", "expect")
_MESSAGE_KEYS = (
    "channel",
    "kind",
    "subject",
    "text",
    "sender",
    "has_location",
    "has_attachment",
    "language",
)
_EXPECT_KEYS = ("department", "kind", "priority", "tags", "fired", "defaulted")


def parse_rule_tests(
    data: object, *, file: str = "routing.tests.yaml", line_of: LineOf | None = None
) -> list[RuleTestCase]:
    """Read a rule tests file: a mapping with a ``tests:`` list of name, message and expect.

    Args:
        data: The file's content as plain Python values (safe YAML).
        file: The file name used in messages.
        line_of: Gives the 1-based line of a path such as ``("tests", 2, "expect")``.

    Returns:
        The test cases, in file order.

    Raises:
        RuleError: With every problem in the file.
    """
    p = _Problems(file, line_of)
    cases: list[RuleTestCase] = []
    top = p.mapping((), data, "a mapping with a 'tests:' list")
    if top is not None:
        for key in top:
            if key != "tests":
                p.unknown_key((), key, ("tests",))
        raw_tests = top.get("tests")
        if not isinstance(raw_tests, list) or not raw_tests:
            p.add(("tests",) if "tests" in top else (), "'tests:' must be a non-empty list")
        else:
            for index, raw in enumerate(raw_tests):
                case = _parse_test(p, index, raw)
                if case is not None:
                    cases.append(case)
    if p.found:
        raise RuleError(p.found)
    return cases


def _parse_test(p: _Problems, index: int, raw: object) -> RuleTestCase | None:
    path: _Path = ("tests", index)
    p.base, p.subject = path, f"test #{index + 1}"
    item = p.mapping(path, raw, "a mapping with 'name', 'message' and 'expect'")
    if item is None:
        return None
    before = len(p.found)
    name = p.text((*path, "name"), item.get("name"))
    if name is not None:
        p.subject = f"test '{name}'"
    for key in item:
        if key not in _TEST_KEYS:
            p.unknown_key(path, key, _TEST_KEYS)
    message = _parse_message(p, (*path, "message"), item.get("message"))
    expect = _parse_expect(p, (*path, "expect"), item.get("expect"))
    if len(p.found) > before or name is None or message is None or expect is None:
        return None
    return RuleTestCase(name, message, expect, p.file, p.line(path))


def parse_message(data: object, *, file: str) -> RoutingInput:
    """Check an example message given as plain values (JSON or YAML) as rule tests do.

    Args:
        data: A mapping with channel, kind, subject, text, sender, has_location, ...
        file: The name used in problem messages.

    Returns:
        The message as the router sees it.

    Raises:
        RuleError: With every problem in the message.
    """
    p = _Problems(file, None)
    message = _parse_message(p, (), data)
    if p.found or message is None:
        raise RuleError(p.found or [f"{file}: not a message"])
    return message


def _optional_text(p: _Problems, path: _Path, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    p.add(path, f"must be text, not {_type_name(value)}")
    return None


def _parse_message(p: _Problems, path: _Path, raw: object) -> RoutingInput | None:
    msg = p.mapping(path, raw, "a mapping with channel, subject, text, ...")
    if msg is None:
        return None
    for key in msg:
        if key not in _MESSAGE_KEYS:
            p.unknown_key(path, key, _MESSAGE_KEYS)
    channel = p.choice((*path, "channel"), msg.get("channel"), CHANNELS, "channel")
    kind = None
    if msg.get("kind") is not None:
        kind = p.choice((*path, "kind"), msg["kind"], KINDS, "kind")
    subject = _optional_text(p, (*path, "subject"), msg.get("subject")) or ""
    text = _optional_text(p, (*path, "text"), msg.get("text")) or ""
    sender = _optional_text(p, (*path, "sender"), msg.get("sender"))
    language = _optional_text(p, (*path, "language"), msg.get("language"))
    flags: dict[str, bool] = {}
    for key in ("has_location", "has_attachment"):
        flags[key] = bool(p.flag((*path, key), msg[key])) if key in msg else False
    if channel is None:
        return None
    if sender and "@" in sender:
        # Ingest hands the router case-folded addresses; do the same for example messages.
        sender = sender.casefold()
    return RoutingInput(
        channel=channel,
        kind=kind,
        subject=subject,
        text=text,
        sender_address=sender or None,
        has_location=flags["has_location"],
        has_attachment=flags["has_attachment"],
        language=language or None,
    )


def _parse_expect(p: _Problems, path: _Path, raw: object) -> Expectation | None:
    expect = p.mapping(path, raw, "a mapping with department, kind, priority, tags or fired")
    if expect is None:
        return None
    if not expect:
        p.add(path, "is empty; say at least which department you expect")
        return None
    for key in expect:
        if key not in _EXPECT_KEYS:
            p.unknown_key(path, key, _EXPECT_KEYS)
    department = None
    if "department" in expect:
        department = p.text((*path, "department"), expect["department"])
    kind = None
    if expect.get("kind") is not None:
        kind = p.choice((*path, "kind"), expect["kind"], KINDS, "kind")
    priority = None
    if "priority" in expect:
        priority = p.choice((*path, "priority"), expect["priority"], PRIORITIES, "priority")
    tags: tuple[str, ...] = ()
    if "tags" in expect:
        tags = tuple(tag for _, tag in p.items((*path, "tags"), expect["tags"]) or ())
    fired: tuple[str, ...] | None = None
    if "fired" in expect:
        raw_fired = expect["fired"]
        # An empty list is a real expectation: no rule may fire.
        if raw_fired == []:
            fired = ()
        else:
            fired = tuple(rule_id for _, rule_id in p.items((*path, "fired"), raw_fired) or ())
    defaulted = None
    if "defaulted" in expect:
        defaulted = p.flag((*path, "defaulted"), expect["defaulted"])
    return Expectation(
        department=department,
        kind=kind,
        check_kind="kind" in expect,
        priority=priority,
        tags=tags,
        fired=fired,
        defaulted=defaulted,
    )


def run_rule_tests(ruleset: RuleSet, cases: Sequence[RuleTestCase]) -> list[RuleTestResult]:
    """Route every example message and compare the decision with what the operator expects.

    Args:
        ruleset: The compiled rules.
        cases: Test cases from :func:`parse_rule_tests`.

    Returns:
        One result per case, in the same order.
    """
    known_ids = set(ruleset.rule_ids)
    results: list[RuleTestResult] = []
    for case in cases:
        got = ruleset.route(case.message)
        want = case.expect
        wrong: list[str] = []
        if want.department is not None and got.department != want.department:
            wrong.append(f"department: expected '{want.department}', got '{got.department}'")
        if want.check_kind and got.kind != want.kind:
            wrong.append(f"kind: expected '{want.kind}', got '{got.kind}'")
        if want.priority is not None and got.priority != want.priority:
            wrong.append(f"priority: expected '{want.priority}', got '{got.priority}'")
        missing = [tag for tag in want.tags if tag not in got.tags]
        if missing:
            shown = ", ".join(got.tags) or "no tags"
            wrong.append(f"tags: expected to include {', '.join(missing)}, got {shown}")
        if want.fired is not None:
            unknown = [rule_id for rule_id in want.fired if rule_id not in known_ids]
            if unknown:
                wrong.append(f"fired: no rule with id {', '.join(unknown)}")
            elif got.fired != want.fired:
                expected = ", ".join(want.fired) or "no rule"
                wrong.append(f"fired: expected {expected}, got {', '.join(got.fired) or 'no rule'}")
        if want.defaulted is not None and got.defaulted != want.defaulted:
            wrong.append(f"defaulted: expected {want.defaulted}, got {got.defaulted}")
        results.append(RuleTestResult(case=case, decision=got, mismatches=tuple(wrong)))
    return results
