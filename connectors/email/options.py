"""``channels.email`` in meldpunt.yaml: the mailboxes meldpunt reads, the SMTP server it sends by.

Secrets arrive through ``${VAR}`` references; an empty host means "not configured", so the sample
configuration can name ``${IMAP_HOST:-}`` and still start when the variable is unset.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TlsMode = Literal["ssl", "starttls", "none"]
AfterImport = Literal["flag", "move", "delete"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Server(_Options):
    """A mail server login; an empty host means the server is not configured."""

    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str = ""
    password: SecretStr = SecretStr("")
    timeout_seconds: float = Field(default=30.0, gt=0)

    @field_validator("port", mode="before")
    @classmethod
    def _empty_port(cls, value: object) -> object:
        # "${IMAP_PORT:-}" with the variable unset: use the TLS mode's usual port.
        return None if value == "" else value

    _required: tuple[str, ...] = ("host",)

    @property
    def missing(self) -> list[str]:
        """What is left empty that this server needs, for the 'disabled' log line."""
        return [name for name in self._required if not getattr(self, name)]

    @property
    def configured(self) -> bool:
        return not self.missing


class MailboxOptions(_Server):
    """One IMAP mailbox to import from."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    tls: TlsMode = "ssl"
    folder: str = "INBOX"
    after_import: AfterImport = "flag"
    move_to: str | None = None
    idle: bool = True
    poll_seconds: float = Field(default=60.0, gt=0)
    _required = ("host", "user")

    @model_validator(mode="after")
    def _move_needs_folder(self) -> MailboxOptions:
        if self.after_import == "move" and not self.move_to:
            raise ValueError("after_import 'move' needs move_to: the folder to move mail to")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.tls == "ssl" else 143


class SmtpOptions(_Server):
    """The SMTP server replies and acknowledgements go out by."""

    tls: TlsMode = "starttls"
    from_address: str = ""
    from_name: str = ""
    # A relay with a certificate of the town's own authority: the CA file to trust for it.
    ca_file: str | None = None
    # The name meldpunt greets the server with (EHLO); empty: this machine's full host name.
    helo_name: str = ""
    _required = ("host", "from_address")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.tls]


class DepartmentSender(_Options):
    """A department's own From and Reply-To on the replies its staff send."""

    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None


class EmailOptions(_Options):
    """``channels.email``."""

    enabled: bool = True
    mailboxes: list[MailboxOptions] = Field(default_factory=list)
    smtp: SmtpOptions = Field(default_factory=SmtpOptions)
    departments: dict[str, DepartmentSender] = Field(default_factory=dict)
    max_message_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_attachment_bytes: int = Field(default=15 * 1024 * 1024, ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> EmailOptions:
        names = [m.name for m in self.mailboxes]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise ValueError(f"mailbox names must be unique: {', '.join(doubles)}")
        return self
