"""Content-addressed attachment storage: bytes on disk under their SHA-256, written durably.

A file is complete on disk (written, fsynced, renamed into place) before the message that refers
to it is committed, so a stored message never points at a missing file. Storing the same bytes
twice is free.

A full disk raises ``StorageFull`` and is remembered for ``/readyz`` until there is room again.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

from prometheus_client import Counter

WRITE_FAILURES = Counter(
    "meldpunt_attachment_write_failures_total",
    "Attachments that could not be written to the attachment storage, by reason.",
    ["reason"],
)
# With less free than this share of the file system and this many bytes, /readyz warns before
# writes start failing.
LOW_SPACE_SHARE = 0.05
LOW_SPACE_BYTES = 1024**3


# Why a file a provider fetched was not kept, shown to staff with the message.
STORAGE_FULL = "the file storage was full"


class StorageFull(OSError):
    """The attachment storage has no room (or quota) left for a file: nothing was kept.

    What a caller does depends on whether the sender can try again: the web form and the web
    chat refuse the upload (the citizen is there), a mail stays in the mailbox, and a file
    fetched from a provider that will not send the message again (Twilio, Telegram, Meta) is
    noted as not kept (``STORAGE_FULL``) while the message's text is stored.
    """


class AttachmentStore:
    """Stores and finds attachment bytes by SHA-256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # (when, bytes that did not fit, the error) of the last write refused for want of
        # space; cleared by the next write that succeeds or once that much is free again.
        self._full: tuple[float, int, str] | None = None

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its SHA-256 hex digest."""
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> str:
        try:
            digest = self._write(data)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                WRITE_FAILURES.labels("error").inc()
                raise
            WRITE_FAILURES.labels("full").inc()
            self._full = (time.time(), len(data), exc.strerror or str(exc))
            raise StorageFull(
                exc.errno, f"the attachment storage {self.root} is full ({exc.strerror})"
            ) from exc
        self._full = None
        return digest

    def _write(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    async def get(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)

    def health(self) -> str:
        """What is wrong with the storage, in words for operators (``/readyz``), else "ok"."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # not created yet: the file system it will be on
        try:
            usage = os.statvfs(folder)
        except OSError as exc:
            return f"unusable: {exc.strerror or exc}"
        free = usage.f_bavail * usage.f_frsize
        total = usage.f_blocks * usage.f_frsize
        if self._full is not None:
            when, needed, error = self._full
            # Room again for the file that did not fit (and some): the next one will be tried.
            if free <= needed + 64 * 1024:
                moment = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
                return (
                    f"full: a file of {size_in_words(needed)} could not be stored at {moment} "
                    f"({error}); {size_in_words(free)} free in {self.root}"
                )
            self._full = None
        if free < min(total * LOW_SPACE_SHARE, LOW_SPACE_BYTES):
            return f"low on space: {size_in_words(free)} of {size_in_words(total)} free"
        return "ok"


# What a file name may not keep: control characters and the characters file systems refuse.
_UNSAFE_IN_NAME = {
    **dict.fromkeys(range(32)),
    **dict.fromkeys(range(0x7F, 0xA0)),
    **dict.fromkeys(map(ord, '<>:"|?*'), None),
    0xFEFF: None,
}


# What citizens may send as files by default: photos, including iPhone's HEIC, and PDF.
PHOTO_AND_PDF_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
)


def safe_filename(name: str, *, limit: int = 200) -> str:
    """A citizen's file name fit to show and store: no folder part, no control or reserved
    characters, at most ``limit`` characters with the extension kept. Empty when nothing is left.
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = name.translate(_UNSAFE_IN_NAME).strip(" .")
    if len(name) > limit:
        _, dot, extension = name.rpartition(".")
        keep = extension if dot and len(extension) <= 10 else ""
        name = name[: limit - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name


# RFC 6838 §4.2 names, under the top-level types a single file has. Multipart and message types are
# containers: a mail client would read such a file as parts of the mail itself.
MEDIA_TYPE_PATTERN = (
    r"^(?:application|audio|font|image|model|text|video)/[a-z0-9][a-z0-9!#$&^_.+-]{0,100}$"
)
_MEDIA_TYPE = re.compile(MEDIA_TYPE_PATTERN)


def media_type(value: str) -> str | None:
    """``value`` as a lower-case ``type/subtype`` fit for one file, or None when it is not one.

    Media types are case-insensitive. Parameters (``; charset=...``) are not accepted: a caller
    that sends them should learn they are not used rather than see them silently dropped.
    """
    value = value.strip().lower()
    return value if _MEDIA_TYPE.fullmatch(value) else None


def size_in_words(size: int) -> str:
    """A size as Dutch readers write it: "23,4 MB", "15 MB", "800 kB", "12 bytes"."""
    if size >= 1024 * 1024:
        value, unit = size / (1024 * 1024), "MB"
    elif size >= 1024:
        value, unit = size / 1024, "kB"
    else:
        return f"{size} bytes"
    number = f"{value:.1f}".rstrip("0").rstrip(".").replace(".", ",")
    return f"{number} {unit}"
