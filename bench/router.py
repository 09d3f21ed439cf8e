"""The router with many rules: decisions per second on one core, and the time of one decision.

Builds a rule set of ``--rules`` rules (default 1,000) of the kinds towns write: word lists with
wildcards per topic, some limited to a channel or a kind, tag-only rules that let evaluation go
on, a few regular expressions and sender domains. Then routes ``--messages`` generated citizen
messages (30 to 120 words, Dutch and French) through ``RuleSet.route`` in this one process and
prints decisions per second and the p50/p99 of single decisions, with the machine it ran on.

    python bench/router.py
    python bench/router.py --rules 5000 --messages 50000

The goal (issue 8): at least 20,000 decisions a second on one core with 1,000 rules.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import machine
from router.rules import RoutingInput, RuleSet, compile_rules

# Topic words: real ones, and made-up compounds of Dutch and French syllables so that 1,000
# rules have a vocabulary the size a region's rules would (thousands of words).
_REAL_WORDS_TEXT = """
straat stoep lamp verlichting put riolering afval container glas papier karton boom tak
blad gras park speeltuin bank fiets auto parkeren bus halte school kind zwembad sporthal
bibliotheek bouw vergunning premie belasting factuur adres verhuis paspoort rijbewijs
identiteitskaart geboorte huwelijk overlijden begraafplaats markt kermis geluid lawaai
hond kat rat duif water overstroming brand rook graffiti vandalisme rue trottoir lampe
eclairage egout dechets verre papier arbre parc banc velo voiture stationnement ecole
piscine permis taxe facture demenagement passeport bruit chien
"""
REAL_WORDS = _REAL_WORDS_TEXT.split()
_SYLLABLES_TEXT = """
ver lich ting straat weg stoep riool put boom park bouw ver gun ning be las af val con tai
ner glas pa pier kar ton lamp paal bord weg dek gat scheur lek dak goot rue lam pe e gout
de chet ar bre pon tage
"""
SYLLABLES = _SYLLABLES_TEXT.split()


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    words = dict.fromkeys(REAL_WORDS)
    while len(words) < size:
        words["".join(rng.choices(SYLLABLES, k=rng.randint(2, 3)))] = None
    return list(words)


VOCABULARY = vocabulary(random.Random(0))
_FILLER_TEXT = """
de het een en van in op met voor is dat er niet aan ook bij al nog maar om dan zo le la
les et des un une est dans sur pour pas que qui ne
"""
FILLER = _FILLER_TEXT.split()
CHANNELS = ("email", "sms", "whatsapp", "webform", "webchat", "telegram", "messenger", "app")
KINDS = ("report", "question", "complaint", "suggestion")


def department(n: int) -> str:
    return f"dienst-{n % 40}"


def build_rules(count: int, rng: random.Random) -> tuple[RuleSet, list[list[str]]]:
    rules: list[dict[str, object]] = []
    topics: list[list[str]] = []
    for i in range(count):
        words = rng.sample(VOCABULARY, 4)
        # Mostly whole words, some prefixes and suffixes, the way operators write them.
        written = [
            w + "*" if j == 0 and i % 3 == 0 else ("*" + w if j == 1 and i % 7 == 0 else w)
            for j, w in enumerate(words)
        ]
        written.append(f"{rng.choice(VOCABULARY)} {rng.choice(VOCABULARY)}")
        topics.append([w.lstrip("*") for w in written if " " not in w])
        when: dict[str, object] = {"words": written}
        if i % 10 == 1:
            when["channel"] = rng.choice(CHANNELS)
        if i % 10 == 2:
            when["kind"] = rng.choice(KINDS)
        if i % 50 == 3:
            when = {"regex": rf"\b{rng.choice(VOCABULARY)}\s*nr\.?\s*\d+"}
        if i % 50 == 4:
            when = {"sender_domain": f"bedrijf{i}.example"}
        rule: dict[str, object] = {"id": f"regel-{i}", "when": when}
        if i % 4 == 0:
            rule["then"] = {"tags": [f"tag-{i % 97}"]}
            rule["always"] = True
        else:
            rule["then"] = {"department": department(i)}
        rules.append(rule)
    departments = {department(i) for i in range(count)} | {"front-desk"}
    ruleset = compile_rules(
        {"default_department": "front-desk", "rules": rules}, departments=departments
    )
    return ruleset, topics


def messages(count: int, rng: random.Random, topics: list[list[str]]) -> list[RoutingInput]:
    """Citizens' messages: mostly small words, a few topic words, and the words of one or two
    rules' topics (written as a citizen would: "lamp*" becomes "lampen")."""
    out = []
    for i in range(count):
        length = rng.randint(30, 120)
        words = [
            rng.choice(VOCABULARY) if rng.random() < 0.05 else rng.choice(FILLER)
            for _ in range(length)
        ]
        for topic in rng.sample(topics, rng.randint(1, 2)):
            for word in rng.sample(topic, 2):
                words.insert(rng.randrange(len(words)), word.replace("*", "en"))
        subject = " ".join(rng.sample(VOCABULARY, 2) + rng.sample(FILLER, 2)).capitalize()
        out.append(
            RoutingInput(
                channel=CHANNELS[i % len(CHANNELS)],
                kind=KINDS[i % len(KINDS)] if i % 3 else None,
                subject=subject,
                text=" ".join(words).capitalize() + ".",
                sender_address=f"burger{i}@example.be",
                language="nl",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1750)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    started = time.perf_counter()
    rules, topics = build_rules(args.rules, rng)
    compiled = time.perf_counter() - started
    sample = messages(args.messages, rng, topics)
    for msg in sample[:200]:  # warm up
        rules.route(msg)

    gc.disable()
    single: list[int] = []
    fired = defaulted = 0
    clock = time.perf_counter_ns
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    for msg in sample:
        t0 = clock()
        decision = rules.route(msg)
        single.append(clock() - t0)
        fired += len(decision.fired)
        defaulted += decision.defaulted
    wall = time.perf_counter() - wall_started
    cpu = time.process_time() - cpu_started
    gc.enable()

    single.sort()
    q = statistics.quantiles(single, n=100)
    rate = len(sample) / cpu
    print(f"machine: {machine()}")
    print(f"rules: {len(rules)} (compiled in {compiled * 1000:.0f} ms), messages: {len(sample)}")
    print(
        f"rules fired per message: {fired / len(sample):.1f}; "
        f"sent to the default department: {defaulted / len(sample):.0%}"
    )
    print()
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| decisions per second of CPU (one core) | {rate:,.0f} |")
    print(f"| decisions per second of wall time | {len(sample) / wall:,.0f} |")
    print(f"| one decision p50 / p99 | {q[49] / 1000:.0f} / {q[98] / 1000:.0f} µs |")
    print(f"| goal: 20,000 a second | {rate / 20000:.2f} of it |")


if __name__ == "__main__":
    main()
