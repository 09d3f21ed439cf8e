"""Content-addressed attachment storage: bytes on disk under their SHA-256, written durably.

A file is complete on disk (written, fsynced, renamed into place) before the message that refers
to it is committed, so a stored message never points at a missing file. Storing the same bytes
twice is free.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path


class AttachmentStore:
    """Stores and finds attachment bytes by SHA-256 under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its SHA-256 hex digest."""
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> str:
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
