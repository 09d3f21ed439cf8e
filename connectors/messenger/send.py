"""What goes to Meta's Send API, and what its errors mean; no I/O here.

Messenger takes at most 2,000 characters of text per message, so a longer answer is split on
line or word boundaries into several messages sent in order. A file goes as a message of its
own, uploaded with the request (multipart ``filedata``), typed ``image``, ``video``, ``audio``
or ``file``; Meta takes up to 25 MB. Errors come as ``{"error": {"code", "error_subcode",
"message", "type", "fbtrace_id"}}``; ``classify`` sorts them into "the window is closed", "try
again later" and "this will never work".

Answers to offer (a survey's "1 😞" to "5 😀") go as quick replies on the last message: Meta shows
up to 13, each title up to 20 characters, and posts a tapped one back as a message whose text is
the title, with the quick reply's payload next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

TEXT_LIMIT = 2000
FILE_LIMIT = 25 * 1024 * 1024
QUICK_REPLY_LIMIT = 13
QUICK_REPLY_TITLE_LIMIT = 20
# A quick reply's payload: the answer it offers. Never "kind:..." (a kind button's payload).
CHOICE_PAYLOAD = "choice:"
# Free-form answers within 24 hours of the citizen's last message; a person's answer with the
# HUMAN_AGENT tag up to 7 days.
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
# Clocks and queues differ a little: an answer at 23 h 59 would still be refused.
WINDOW_MARGIN = timedelta(minutes=5)

# Code and subcode of "this message is sent outside of allowed window".
OUTSIDE_WINDOW = {(10, 2018278)}
# Codes a later attempt can get past: Meta's own trouble, rate limits, and an expired or
# revoked token or a missing permission, which the operator fixes meanwhile.
TEMPORARY_CODES = {1, 2, 4, 10, 17, 32, 190, 200, 368, 613, 1200}
# Plain words for the codes staff meet most, shown next to Meta's message.
ERROR_TEXT: dict[int, str] = {
    4: "too many requests for the app: Meta's rate limit",
    10: "the Page's app lacks a permission (pages_messaging) or Meta's approval",
    100: "Meta refused the request as invalid (the citizen's id is unknown to this Page?)",
    190: "the Page access token is invalid or expired: set a new FACEBOOK_PAGE_TOKEN",
    200: "the Page's app lacks a permission",
    551: "the citizen cannot be reached on Messenger (blocked the Page or left Messenger)",
    613: "too many messages in a short time: Meta's rate limit",
    1200: "a temporary failure at Meta",
}


class Closed(Exception):
    """Messenger takes no answer now; the text says why."""


def messaging_fields(
    since_last: timedelta | None, *, automatic: bool, human_agent_tag: bool
) -> dict[str, str]:
    """``messaging_type`` (and ``tag``) an answer may go with, ``since_last`` the citizen wrote.

    Raises:
        Closed: nothing may go until the citizen writes again.
    """
    if since_last is None:
        raise Closed("the citizen never wrote on Messenger")
    if since_last < STANDARD_WINDOW - WINDOW_MARGIN:
        return {"messaging_type": "RESPONSE"}
    if since_last >= HUMAN_AGENT_WINDOW - WINDOW_MARGIN:
        raise Closed("the citizen last wrote more than 7 days ago")
    if not human_agent_tag:
        raise Closed("the citizen last wrote more than 24 hours ago (human_agent_tag is off)")
    if automatic:
        # The tag is only for a person's answer; an automatic notice may not use it.
        raise Closed(
            "the citizen last wrote more than 24 hours ago, and this is no person's answer"
        )
    return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a line end or a space.

    A paragraph break near the limit is preferred, then a line end, then a space; a single word
    longer than the limit is cut where it must be.
    """
    rest = text.strip()
    pieces: list[str] = []
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for separator in ("\n\n", "\n", " "):
            found = window.rfind(separator)
            # A break in the first half would leave a short piece: look for a smaller one.
            if found > limit // 2:
                cut = found
                break
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _utf16(text: str) -> int:
    # Counted as Meta's JavaScript does: an emoji is two.
    return len(text.encode("utf-16-le")) // 2


def quick_replies(choices: Sequence[str]) -> list[dict[str, str]]:
    """``choices`` as Messenger quick replies; none at all when Meta would not show them whole.

    Meta cuts a longer title short and would post the cut title back, which is not the answer
    offered; and a part of the answers is no fair choice. The text says how to answer anyway.
    """
    labels = [choice.strip() for choice in choices]
    if not labels or len(labels) > QUICK_REPLY_LIMIT:
        return []
    if any(not label or _utf16(label) > QUICK_REPLY_TITLE_LIMIT for label in labels):
        return []
    return [
        {"content_type": "text", "title": label, "payload": f"{CHOICE_PAYLOAD}{label}"}
        for label in labels
    ]


def attachment_type(content_type: str) -> str:
    """Messenger's name for a file of ``content_type``."""
    major = content_type.split("/", 1)[0].lower()
    return major if major in ("image", "video", "audio") else "file"


@dataclass(frozen=True, slots=True)
class GraphError:
    """One error answer of the Graph API."""

    status: int
    code: int | None
    subcode: int | None
    message: str
    trace: str | None

    @classmethod
    def of(cls, status: int, body: object) -> GraphError:
        error = body.get("error") if isinstance(body, Mapping) else None
        error = error if isinstance(error, Mapping) else {}

        def number(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            status=status,
            code=number(error.get("code")),
            subcode=number(error.get("error_subcode")),
            message=str(error.get("message") or f"HTTP {status}")[:500],
            trace=str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
        )

    @property
    def outside_window(self) -> bool:
        return (self.code, self.subcode) in OUTSIDE_WINDOW

    @property
    def permanent(self) -> bool:
        """Whether sending the same again can never work."""
        if self.code in TEMPORARY_CODES or self.status >= 500 or self.status in (408, 429):
            return False
        return self.code is not None or 400 <= self.status < 500

    def describe(self) -> str:
        code = (
            f"code {self.code}" + (f"/{self.subcode}" if self.subcode else "")
            if self.code is not None
            else f"HTTP {self.status}"
        )
        words = ERROR_TEXT.get(self.code or 0)
        trace = f", fbtrace {self.trace}" if self.trace else ""
        plain = f"{words}; " if words else ""
        return f"{plain}{self.message} ({code}{trace})"
