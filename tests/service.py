"""A throwaway copy of the sample configuration, pointed at a test database and data folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meldpunt.config import LoadedConfig, load_config

SAMPLE = Path(__file__).resolve().parent.parent / "config"


def sample_config(
    folder: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    replace: dict[str, str] | None = None,
) -> LoadedConfig:
    """Copy the shipped sample config to ``folder`` and load it against ``database_url``."""
    target = folder / "config"
    shutil.copytree(SAMPLE, target)
    main = target / "meldpunt.yaml"
    text = main.read_text(encoding="utf-8").replace("data_dir: var", f"data_dir: {folder / 'var'}")
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in the sample config"
        text = text.replace(old, new)
    main.write_text(text, encoding="utf-8")
    monkeypatch.setenv("MELDPUNT_DATABASE_URL", database_url)
    monkeypatch.setenv("MELDPUNT_SECRET_KEY", "test-secret-key-0123456789")
    return load_config(main)
