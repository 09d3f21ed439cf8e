"""Reads and validates the operator's configuration folder, whole, once.

``config/meldpunt.yaml`` is the main file; it names the routing rules file. Every error is reported
with its file, YAML path and line, all at once, so an operator can fix them in one go. Secrets are
never written in YAML: values may reference the environment as ``${VAR}`` or ``${VAR:-default}``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import holidays
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.email.options import EmailOptions
from connectors.messenger.options import MessengerOptions
from connectors.telegram.options import TelegramOptions
from connectors.twilio.options import TwilioOptions
from connectors.webchat.options import WebChatOptions
from connectors.webform import WebFormOptions
from inbox.answers import ANSWERS_FILE, AnswersError, CannedAnswers, compile_answers
from ingest.acknowledge import DeadlinePolicy
from ingest.deadlines import Duration
from ingest.hours import OfficeHours
from meldpunt.yamlsource import YamlDocument, YamlError, expand_env, load_yaml_file
from router.rules import RuleError, RuleSet, compile_rules

DEFAULT_CONFIG = Path("config/meldpunt.yaml")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every error as ``file:line: path: text``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Town(_Strict):
    name: str = Field(min_length=1, max_length=100)
    reference_prefix: str = "MP"
    language: Literal["nl", "fr", "en"] = "nl"
    timezone: str = "Europe/Brussels"
    # How citizens reach the town otherwise; the notice templates may name them.
    phone: str = ""
    email: str = ""
    website: str = ""

    @field_validator("reference_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9]{1,10}", value):
            raise ValueError('use 1 to 10 letters or digits, e.g. "1750"')
        return value


class Department(_Strict):
    id: str
    name: str = Field(min_length=1)
    email: str | None = None
    lead_email: str | None = None

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("use lower-case letters, digits, '-' or '_', e.g. 'technical-service'")
        return value


class Channels(_Strict):
    webform: WebFormOptions = Field(default_factory=WebFormOptions)
    email: EmailOptions = Field(default_factory=EmailOptions)
    twilio: TwilioOptions = Field(default_factory=TwilioOptions)
    webchat: WebChatOptions = Field(default_factory=WebChatOptions)
    messenger: MessengerOptions = Field(default_factory=MessengerOptions)
    telegram: TelegramOptions = Field(default_factory=TelegramOptions)


class Intake(_Strict):
    """How ingest batches durable writes and when a chat or call continues an open ticket."""

    max_batch: int = Field(default=256, ge=1, le=5000)
    conversation_window_hours: float = Field(default=24.0, gt=0)
    acknowledgements_per_address_per_hour: int | None = Field(default=3, ge=0)


class Dispatch(_Strict):
    interval_seconds: float = Field(default=2.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_seconds: float = Field(default=30.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)
    send_timeout_seconds: float = Field(default=60.0, gt=0)
    # How often the provider is asked whether an uncertain send arrived, when asking fails.
    lookup_attempts: int = Field(default=4, ge=1, le=100)


KindName = Literal["report", "question", "suggestion", "complaint", "compliment"]


class DeadlinePolicyConfig(_Strict):
    """One entry of ``deadlines.policies``: the first one matching a ticket applies."""

    name: str = Field(min_length=1)
    kinds: list[KindName] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)
    first_answer: str | None = None
    resolution: str | None = None

    @field_validator("first_answer", "resolution")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            Duration.parse(value)
        return value

    def policy(self) -> DeadlinePolicy:
        return DeadlinePolicy(
            name=self.name,
            first_answer=Duration.parse(self.first_answer) if self.first_answer else None,
            resolution=Duration.parse(self.resolution) if self.resolution else None,
            kinds=tuple(self.kinds),
            departments=tuple(self.departments),
        )


def _default_policies() -> list[DeadlinePolicyConfig]:
    return [DeadlinePolicyConfig(name="standard", first_answer="3 working_days")]


class Deadlines(_Strict):
    """``deadlines``: when answers are due, and which days do not count."""

    # Public holidays from the holidays package for this country code; null: none.
    holidays: str | None = "BE"
    # Extra closing days: "MM-DD" every year or "YYYY-MM-DD" once (office_hours.closed_days too).
    closed_days: list[str] = Field(default_factory=list)
    policies: list[DeadlinePolicyConfig] = Field(default_factory=_default_policies)
    # Staff are warned this many hours (wall-clock) before a deadline; 0: no warnings.
    warn_before_hours: float = Field(default=24.0, ge=0)

    @field_validator("holidays")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                holidays.country_holidays(value)
            except NotImplementedError:
                raise ValueError(f"'{value}' is no country code the holidays package knows, "
                                 "e.g. BE") from None  # fmt: skip
        return value

    @field_validator("closed_days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for day in value:
            if not re.fullmatch(r"(\d{4}-)?\d{2}-\d{2}", day):
                raise ValueError(f"'{day}' is not a day like '12-26' or '2026-12-24'")
        return value


class Notices(_Strict):
    """``notices``: the messages meldpunt writes to citizens by itself."""

    # The folder of Jinja2 templates, relative to the main configuration file.
    templates: str = "templates"


class Survey(_Strict):
    """``follow_up.survey``: the satisfaction question after a ticket is resolved."""

    enabled: bool = True
    delay_hours: float = Field(default=24.0, ge=0)
    # A score at or below this sends the ombudsman's details and tells the department.
    threshold: int = Field(default=2, ge=1, le=4)
    answer_within_days: float = Field(default=14.0, gt=0)


class Ombudsman(_Strict):
    """``follow_up.ombudsman``: where an unhappy citizen can turn (the notice names it)."""

    name: str = "de ombudsdienst"
    email: str = ""
    phone: str = ""
    url: str = ""


class FollowUpConfig(_Strict):
    """``follow_up``: reopening, closing, the survey and the ombudsman."""

    # A message on a resolved ticket within this many days reopens it; a resolved ticket is
    # closed after them, and later messages open a new ticket linked to it.
    reopen_within_days: float = Field(default=14.0, gt=0)
    # How often each process looks for due timers (warnings, escalations, surveys, closing).
    interval_seconds: float = Field(default=30.0, gt=0)
    survey: Survey = Field(default_factory=Survey)
    ombudsman: Ombudsman = Field(default_factory=Ombudsman)


class RoutingRef(_Strict):
    file: str = "routing.yaml"
    tests: str | None = "routing.tests.yaml"


class Settings(_Strict):
    """The whole validated configuration, plus where it came from."""

    town: Town
    public_url: str = "http://127.0.0.1:8750"
    database_url: str = "sqlite+aiosqlite:///var/meldpunt.db"
    # PostgreSQL: connections each process keeps open (as many again while it is busy).
    database_pool_size: int = Field(default=10, ge=1, le=500)
    data_dir: str = "var"
    secret_key: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    departments: list[Department] = Field(min_length=1)
    default_department: str
    office_hours: OfficeHours = Field(default_factory=lambda: OfficeHours.model_validate({}))
    channels: Channels = Field(default_factory=Channels)
    intake: Intake = Field(default_factory=Intake)
    dispatch: Dispatch = Field(default_factory=Dispatch)
    routing: RoutingRef = Field(default_factory=RoutingRef)
    deadlines: Deadlines = Field(default_factory=Deadlines)
    notices: Notices = Field(default_factory=Notices)
    follow_up: FollowUpConfig = Field(default_factory=FollowUpConfig)

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _departments(self) -> Settings:
        ids = [d.id for d in self.departments]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"department ids must be unique: {', '.join(dupes)}")
        if self.default_department not in ids:
            raise ValueError(
                f"default_department '{self.default_department}' is not one of the departments"
            )
        for policy in self.deadlines.policies:
            if strays := sorted(set(policy.departments) - set(ids)):
                raise ValueError(
                    f"deadlines policy '{policy.name}' names unknown department(s) "
                    f"{', '.join(strays)}; valid: {', '.join(ids)}"
                )
        unknown = sorted(set(self.channels.email.departments) - set(ids))
        if unknown:
            raise ValueError(
                f"channels.email.departments names unknown department(s) {', '.join(unknown)}; "
                f"valid: {', '.join(ids)}"
            )
        return self

    def department(self, dep_id: str) -> Department | None:
        return next((d for d in self.departments if d.id == dep_id), None)


@dataclass(frozen=True)
class LoadedConfig:
    """Settings plus the compiled routing rules and the folder they came from."""

    settings: Settings
    rules: RuleSet
    folder: Path
    config_file: Path
    rules_file: Path
    # The staff's canned answers (answers.yaml next to the main file; none without it).
    answers: CannedAnswers = field(default_factory=CannedAnswers)

    @property
    def templates_dir(self) -> Path:
        return self.folder / self.settings.notices.templates

    @property
    def data_dir(self) -> Path:
        path = Path(self.settings.data_dir)
        return path if path.is_absolute() else Path.cwd() / path


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` wins, then ``MELDPUNT_CONFIG``, then ``config/meldpunt.yaml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MELDPUNT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def _expand(value: object) -> object:
    if isinstance(value, str):
        return expand_env(value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _pydantic_problems(doc: YamlDocument, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
        # Errors raised in a model validator point at the model itself; a validator on a list
        # field adds the item index. Either way the nearest known line is the best pointer.
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{doc.where(loc)}: {dotted}: {msg}")
    return problems


def load_settings(path: Path) -> tuple[Settings, YamlDocument]:
    try:
        doc = load_yaml_file(path)
    except YamlError as exc:
        raise ConfigError([str(exc)]) from None
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the file must be a mapping of settings"])
    data = _expand(data)
    assert isinstance(data, dict)
    if url := os.environ.get("MELDPUNT_DATABASE_URL"):
        data["database_url"] = url
    if url := os.environ.get("MELDPUNT_PUBLIC_URL"):
        data["public_url"] = url
    if key := os.environ.get("MELDPUNT_SECRET_KEY"):
        data["secret_key"] = key
    try:
        return Settings.model_validate(data), doc
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(doc, exc)) from None


def _raw_departments(doc_data: object) -> tuple[set[str] | None, str | None]:
    """Department ids and default as written, to check the rules even when settings fail."""
    if not isinstance(doc_data, dict):
        return None, None
    deps = doc_data.get("departments")
    ids = (
        {d["id"] for d in deps if isinstance(d, dict) and isinstance(d.get("id"), str)}
        if isinstance(deps, list)
        else None
    )
    default = doc_data.get("default_department")
    return ids or None, default if isinstance(default, str) else None


def load_config(path: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """Load and validate the main file and the routing rules it names; raise ConfigError.

    Problems in both files are reported together, so one run shows everything to fix.
    """
    config_file = config_path(path)
    problems: list[str] = []
    settings: Settings | None = None
    departments: set[str] | None
    try:
        settings, _ = load_settings(config_file)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if settings is not None:
        rules_name, departments = settings.routing.file, {d.id for d in settings.departments}
        default: str | None = settings.default_department
    else:
        try:
            raw = load_yaml_file(config_file).data
        except YamlError:
            raise ConfigError(problems) from None
        routing = raw.get("routing") if isinstance(raw, dict) else None
        rules_name = (
            str(routing.get("file", "routing.yaml"))
            if isinstance(routing, dict)
            else "routing.yaml"
        )
        departments, default = _raw_departments(raw)
    rules_file = config_file.parent / rules_name
    rules: RuleSet | None = None
    try:
        rules_doc = load_yaml_file(rules_file)
        rules = compile_rules(
            rules_doc.data,
            file=str(rules_file),
            line_of=rules_doc.line_of,
            departments=departments,
            default_department=default,
        )
    except YamlError as exc:
        problems.append(str(exc))
    except RuleError as exc:
        problems.extend(exc.problems)
    answers = CannedAnswers()
    try:
        answers = load_answers(config_file.parent)
    except AnswersError as exc:
        problems.extend(exc.problems)
    if problems or settings is None or rules is None:
        raise ConfigError(problems)
    return LoadedConfig(
        settings=settings,
        rules=rules,
        folder=config_file.parent,
        config_file=config_file,
        rules_file=rules_file,
        answers=answers,
    )


def load_answers(folder: Path) -> CannedAnswers:
    """The canned answers in ``folder``/answers.yaml; none when the file is not there.

    Raises:
        AnswersError: the file cannot be read or has errors (all of them, each with its line).
    """
    path = folder / ANSWERS_FILE
    if not path.exists():
        return CannedAnswers()
    try:
        doc = load_yaml_file(path)
    except YamlError as exc:
        raise AnswersError([str(exc)]) from None
    return compile_answers(doc.data, file=str(path), line_of=doc.line_of)
