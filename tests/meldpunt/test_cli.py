"""The ``meldpunt`` command as an operator runs it: a real process, its exit code and its text."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from store.db import Database
from store.migrate import head_revision
from store.users import user_for_token
from tests.conftest import free_port

SAMPLE = Path(__file__).resolve().parents[2] / "config"
SECRET = "cli-test-secret-key-0123456789"
PASSWORD = "correct horse battery"
LAMP = {
    "channel": "webform",
    "subject": "Straatlamp kapot",
    "text": "De lamp voor huisnummer 12 in de Kerkstraat brandt al een week niet.",
}


@dataclasses.dataclass(frozen=True)
class Cli:
    """Runs ``python -m meldpunt --config <config>`` in ``cwd`` against the database ``url``.

    Without ``config`` the command looks for its default, ``config/meldpunt.yaml`` in ``cwd``.
    """

    cwd: Path
    config: Path | None
    url: str

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MELDPUNT_DATABASE_URL": self.url, "MELDPUNT_SECRET_KEY": SECRET}
        env.pop("MELDPUNT_CONFIG", None)
        for name in [n for n in env if n.startswith(("IMAP_", "SMTP_", "TWILIO_"))]:
            del env[name]  # the sample's mailbox, mail server and Twilio stay unconfigured
        config = ["--config", str(self.config)] if self.config else []
        done = subprocess.run(
            [sys.executable, "-m", "meldpunt", *config, *args],
            input=stdin, env=env, cwd=self.cwd, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        # An operator must get a sentence, never a stack trace, whatever went wrong.
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done


def together(
    *commands: Callable[[], subprocess.CompletedProcess[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands side by side: each one pays the interpreter's start-up."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        running = [pool.submit(command) for command in commands]
        return [future.result() for future in running]


@pytest.fixture
def cli(tmp_path: Path, sqlite_url: str) -> Cli:
    """The shipped sample configuration, copied, on a SQLite file that does not exist yet."""
    shutil.copytree(SAMPLE, tmp_path / "config")
    return Cli(tmp_path, tmp_path / "config" / "meldpunt.yaml", sqlite_url)


def sample_rule_ids() -> list[str]:
    data = yaml.safe_load((SAMPLE / "routing.yaml").read_text(encoding="utf-8"))
    return [str(rule["id"]) for rule in data["rules"]]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- check-config ----------------------------------------------------------------------------


def test_check_config_summarises_the_sample(cli: Cli) -> None:
    done = cli.run("check-config")
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
    assert "town: Wingene (references 1750-000001)" in done.stdout
    assert (
        "departments: front-desk, technical-service, environment, civil-affairs, complaints"
        in done.stdout
    )
    assert f"routing: {len(sample_rule_ids())} rules in" in done.stdout
    assert "database: sqlite" in done.stdout
    assert "e-mail in, mailbox contactpunt: off, host, user not set" in done.stdout
    assert "e-mail out: off, host, from_address not set" in done.stdout
    assert (
        "SMS and WhatsApp (Twilio): off, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN not set"
        in done.stdout
    )
    assert (
        "Facebook Messenger: off, FACEBOOK_APP_SECRET, FACEBOOK_VERIFY_TOKEN, "
        "FACEBOOK_PAGE_TOKEN not set" in done.stdout
    )
    # The chat needs no account: it is on, and says where it may be embedded.
    assert "web chat: http://127.0.0.1:8750/chat/widget.js, may be embedded on https://" in (
        done.stdout
    )


BROKEN_MAIN = textwrap.dedent(
    """\
    town:
      name: Wingene
      reference_prefix: "17-50"
    departments:
      - id: front-desk
        name: Onthaal
      - id: environment
        name: Milieu en afval
    default_department: front-desk
    log_levle: debug
    """
)
BROKEN_RULES = textwrap.dedent(
    """\
    default_department: front-desk
    rules:
      - id: afval
        when:
          words: ["*afval*"]
        then:
          department: environment
        colour: green
      - id: lampen
        when:
          words: [lamp*]
        then:
          department: technical-service
    """
)


def test_check_config_lists_every_problem_in_both_files_with_its_line(cli: Cli) -> None:
    folder = cli.cwd / "broken"
    folder.mkdir()
    main, rules = folder / "meldpunt.yaml", folder / "routing.yaml"
    main.write_text(BROKEN_MAIN, encoding="utf-8")
    rules.write_text(BROKEN_RULES, encoding="utf-8")

    done = dataclasses.replace(cli, config=main).run("check-config")

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("meldpunt: the configuration has errors:")
    problems = [line.strip() for line in done.stderr.splitlines()[1:]]
    assert len(problems) == 4, done.stderr
    assert problems[0].startswith(f"{main}:3: town.reference_prefix: use 1 to 10 letters or digits")
    assert problems[1].startswith(f"{main}:10: log_levle: ")
    assert problems[2].startswith(f"{rules}:8: rule 'afval': unknown key 'colour'")
    assert problems[3] == (
        f"{rules}:13: rule 'lampen': then.department: unknown department 'technical-service'; "
        "valid: environment, front-desk"
    )


def test_a_missing_configuration_file_is_named(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "elders" / "meldpunt.yaml"
    empty = tmp_path / "empty"
    empty.mkdir()
    explicit, default = together(
        lambda: dataclasses.replace(cli, config=missing).run("check-config"),
        lambda: dataclasses.replace(cli, cwd=empty, config=None).run("check-config"),
    )
    assert explicit.returncode == 1
    assert explicit.stderr == (
        f"meldpunt: the configuration has errors:\n  {missing}: file not found\n"
    )
    assert default.returncode == 1
    assert "config/meldpunt.yaml: file not found" in default.stderr


# --- route -----------------------------------------------------------------------------------


def test_route_prints_the_decision_for_a_file_and_for_stdin(cli: Cli, tmp_path: Path) -> None:
    lamp = write_json(tmp_path / "lamp.json", LAMP)
    noise = {
        "channel": "email",
        "text": "Elke nacht luide muziek bij de buren.",
        "sender": "a@b.be",
    }
    from_file, from_stdin = together(
        lambda: cli.run("route", str(lamp)),
        lambda: cli.run("route", "-", stdin=json.dumps(noise)),
    )
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout) == {
        "department": "technical-service",
        "kind": "report",
        "priority": "normal",
        "tags": ["straatverlichting"],
        "rules": ["straatverlichting"],
        "defaulted": False,
    }
    assert from_stdin.returncode == 0, from_stdin.stderr
    decision = json.loads(from_stdin.stdout)
    assert (decision["department"], decision["rules"]) == ("environment", ["geluidshinder"])


def test_route_explain_accounts_for_every_rule(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("route", "--explain", str(write_json(tmp_path / "lamp.json", LAMP)))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "department: technical-service (chosen by rule 'straatverlichting')" in out
    assert "fired:      straatverlichting" in out
    for rule_id in sample_rule_ids():
        verdict = "+ {}: fired" if rule_id == "straatverlichting" else "- {}: did not match"
        assert f"\n  {verdict.format(rule_id)}  (" in out, rule_id
    # The reasons, not just the verdicts: which words matched, why a rule was passed over.
    assert "words: matched 'straatlamp', 'lamp'" in out
    assert "kind: unknown, so not complaint" in out
    assert "channel: 'webform' is not email" in out


def test_route_refuses_bad_json_and_unknown_fields(cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "channel": "webform",\n  "text": "lamp kapot",\n}\n', encoding="utf-8")
    unknown = write_json(tmp_path / "unknown.json", {**LAMP, "colour": "red"})
    bad_json, bad_field = together(
        lambda: cli.run("route", str(broken)),
        lambda: cli.run("route", str(unknown)),
    )
    assert bad_json.returncode == 1
    assert bad_json.stdout == ""
    assert bad_json.stderr.startswith(f"meldpunt: {broken}:4: not valid JSON")
    assert bad_field.returncode == 1
    assert bad_field.stdout == ""
    assert bad_field.stderr.startswith(f"meldpunt: {unknown}: unknown field(s) colour;")


def test_route_checks_field_values_like_rules_test_does(cli: Cli, tmp_path: Path) -> None:
    message = {
        "channel": "pigeon",
        "kind": "nonsense",
        "text": "Foto van de put in de straat.",
        "has_location": "no",
    }
    done = cli.run("route", str(write_json(tmp_path / "odd.json", message)))
    assert done.returncode == 1, done.stdout
    for field in ("channel", "kind", "has_location"):
        assert field in done.stderr


# --- rules test ------------------------------------------------------------------------------

WRONG_EXPECTATION = textwrap.dedent(
    """\
    tests:
      - name: straatlamp
        message:
          channel: webform
          text: De straatlamp is kapot.
        expect:
          department: technical-service
      - name: straatlamp bij milieu
        message:
          channel: webform
          text: De straatlamp is kapot.
        expect:
          department: environment
    """
)


def test_rules_test_runs_the_examples_and_names_a_failing_case(cli: Cli, tmp_path: Path) -> None:
    cases = tmp_path / "wrong.tests.yaml"
    cases.write_text(WRONG_EXPECTATION, encoding="utf-8")
    sample = yaml.safe_load((SAMPLE / "routing.tests.yaml").read_text(encoding="utf-8"))
    passing, failing = together(
        lambda: cli.run("rules", "test"),
        lambda: cli.run("rules", "test", str(cases)),
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout == f"{len(sample['tests'])} passed, 0 failed\n"
    assert failing.returncode == 1
    assert failing.stdout.splitlines() == [
        f"FAIL {cases}:8: test 'straatlamp bij milieu': department: expected 'environment', "
        "got 'technical-service'",
        "1 passed, 1 failed",
    ]


# --- migrate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_migrate_brings_an_empty_database_to_the_head_twice_over(
    cli: Cli, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        new_database: Callable[[], str] = request.getfixturevalue("postgres_url")
        cli = dataclasses.replace(cli, url=new_database())
    first = cli.run("migrate")
    again = cli.run("migrate")
    for done in (first, again):
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"database is at revision {head_revision()}\n"


@pytest.mark.parametrize(
    "case",
    [
        "migrate-unreachable-server",
        "token-create-before-migrate",
        pytest.param("user-add-on-unmigrated-postgresql", marks=pytest.mark.postgres),
    ],
)
def test_database_failures_are_reported_without_a_traceback(
    cli: Cli, case: str, request: pytest.FixtureRequest
) -> None:
    if case == "migrate-unreachable-server":
        # Nothing listens on a port that was free a moment ago.
        url = f"postgresql://meldpunt@127.0.0.1:{free_port()}/meldpunt"
        done = dataclasses.replace(cli, url=url).run("migrate")
    elif case == "token-create-before-migrate":
        done = cli.run("token", "create", "an@wingene.example")
    else:
        new_database: Callable[[], str] = request.getfixturevalue("postgres_url")
        done = dataclasses.replace(cli, url=new_database()).run(
            "user", "add", "an@wingene.example", "--role", "admin", stdin=PASSWORD + "\n"
        )
    assert done.returncode == 1
    assert done.stderr.startswith("meldpunt: ")


# --- users and tokens ------------------------------------------------------------------------


def add_user(
    cli: Cli, email: str, *options: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """``meldpunt user add``, the password typed on stdin as a script would."""
    return cli.run("user", "add", email, *options, stdin=password + "\n")


def test_user_add_refuses_what_an_operator_can_get_wrong(cli: Cli) -> None:
    unknown, short, homeless = together(
        lambda: add_user(cli, "jan@wingene.example", "--role", "agent", "--department", "parks"),
        lambda: add_user(cli, "els@wingene.example", "--role", "admin", password="kort"),
        lambda: add_user(cli, "piet@wingene.example", "--role", "agent"),
    )
    for done in (unknown, short, homeless):
        assert done.returncode == 1
        assert done.stdout == ""
    assert unknown.stderr == (
        "meldpunt: unknown department(s) parks; valid: front-desk, technical-service, "
        "environment, civil-affairs, complaints\n"
    )
    assert short.stderr == "meldpunt: the password must be at least 12 characters long\n"
    assert homeless.stderr == "meldpunt: an agent needs at least one department\n"


async def token_owner(url: str, token: str) -> tuple[str, str, list[str]] | None:
    db = Database(url)
    try:
        async with db.session() as session:
            user = await user_for_token(session, token)
            return None if user is None else (user.email, user.role, list(user.departments))
    finally:
        await db.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_an_added_agent_is_unique_and_gets_one_working_token(
    cli: Cli, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        # A migrated database, as an operator has after 'meldpunt migrate'.
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.new_database(template=request.getfixturevalue("postgres_template"))
        cli = dataclasses.replace(cli, url=url)
    added = add_user(
        cli, "An.Peeters@Wingene.example", "--role", "agent", "--department", "environment",
        "--name", "An Peeters",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == "user an.peeters@wingene.example created (agent)\n"
    agent = "an.peeters@wingene.example"

    duplicate, created, unknown = together(
        lambda: add_user(cli, "AN.PEETERS@wingene.example", "--role", "operator"),
        lambda: cli.run("token", "create", agent, "--name", "koppeling GIS"),
        lambda: cli.run("token", "create", "nobody@wingene.example"),
    )
    assert duplicate.returncode == 1
    assert duplicate.stderr == f"meldpunt: a user with e-mail {agent} already exists\n"

    assert created.returncode == 0, created.stderr
    [token] = created.stdout.splitlines()
    assert token.startswith("mp_") and len(token) > 30
    assert "Keep this token secret" in created.stderr
    assert token not in created.stderr
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr == "meldpunt: no user with e-mail nobody@wingene.example\n"

    assert asyncio.run(token_owner(cli.url, token)) == (agent, "agent", ["environment"])
    assert asyncio.run(token_owner(cli.url, token[:-1] + "x")) is None


# --- serve -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refused_start(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: Callable[[], str]
) -> subprocess.CompletedProcess[str]:
    """``meldpunt serve`` on a fresh PostgreSQL database without schema, run until it gives up."""
    folder = tmp_path_factory.mktemp("serve")
    shutil.copytree(SAMPLE, folder / "config")
    env = {**os.environ, "MELDPUNT_DATABASE_URL": postgres_url(), "MELDPUNT_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "meldpunt", "--config", str(folder / "config/meldpunt.yaml"),
               "serve", "--port", str(free_port())]  # fmt: skip
    try:
        return subprocess.run(
            command, env=env, cwd=folder, capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("meldpunt serve kept running on a database without schema")


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_postgresql_database(
    refused_start: subprocess.CompletedProcess[str],
) -> None:
    assert refused_start.returncode == 1
    assert "Traceback" not in refused_start.stderr, refused_start.stderr[-3000:]
    assert refused_start.stderr == (
        "meldpunt: the database schema is not up to date: run 'meldpunt migrate' first\n"
    )


@pytest.mark.postgres
def test_serve_does_not_claim_to_listen_when_it_refuses_to_start(
    refused_start: subprocess.CompletedProcess[str],
) -> None:
    assert refused_start.returncode == 1
    assert "listening" not in refused_start.stdout


# --- help ------------------------------------------------------------------------------------


def test_help_names_every_command_and_the_serve_options(cli: Cli) -> None:
    top, serve = together(lambda: cli.run("--help"), lambda: cli.run("serve", "--help"))
    assert top.returncode == 0 and serve.returncode == 0
    for command in ("serve", "check-config", "route", "rules", "migrate", "user", "token"):
        assert f"\n    {command} " in top.stdout, command
    assert "--config" in top.stdout
    assert "--host" in serve.stdout and "--port" in serve.stdout


def test_check_config_names_each_broken_notice_template(cli: Cli) -> None:
    assert cli.config is not None
    templates = cli.config.parent / "templates"
    (templates / "fr" / "survey.j2").write_text(
        "{% block text %}Merci {{ nom }}.{% endblock %}", encoding="utf-8"
    )
    (templates / "en" / "resolved.j2").unlink()  # English falls back to the town's Dutch one
    (templates / "nl" / "resolved.j2").unlink()
    done = cli.run("check-config")
    assert done.returncode == 1
    assert "fr/survey.j2: 'nom' is undefined" in done.stderr
    assert "no template for resolved" in done.stderr and "nl/resolved.j2" in done.stderr
    assert "notice template(s) need fixing" in done.stderr
    assert "configuration OK" not in done.stdout
