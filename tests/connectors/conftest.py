from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from meldpunt.app import create_app
from meldpunt.config import LoadedConfig
from tests.service import sample_config

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
def service_config(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> LoadedConfig:
    return sample_config(tmp_path, database_url, monkeypatch)


@pytest.fixture
async def client(service_config: LoadedConfig, aiohttp_client: ClientFactory) -> TestClient:  # type: ignore[type-arg]
    # The database fixture comes first so that it is dropped only after the app has stopped.
    return await aiohttp_client(create_app(service_config, migrate=True))
