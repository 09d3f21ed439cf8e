"""Configuration loading: the shipped sample, the environment, and errors an operator can act on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meldpunt.config import ConfigError, config_path, load_config

SAMPLE = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLE, tmp_path / "config")
    return tmp_path / "config"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_the_shipped_sample_loads(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MELDPUNT_PUBLIC_URL", raising=False)
    monkeypatch.delenv("MELDPUNT_DATABASE_URL", raising=False)
    config = load_config(folder / "meldpunt.yaml")
    s = config.settings
    assert s.town.reference_prefix == "1750"
    assert s.default_department == "front-desk"
    assert {d.id for d in s.departments} >= {"technical-service", "environment", "complaints"}
    assert s.public_url == "http://127.0.0.1:8750"
    assert s.database_url.startswith("sqlite")
    assert s.office_hours.friday[0].start.hour == 8
    assert len(config.rules) > 5


def test_environment_overrides_and_references(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MELDPUNT_PUBLIC_URL", "https://meldpunt.wingene.example/")
    monkeypatch.setenv("MELDPUNT_DATABASE_URL", "postgresql://u:p@db/meldpunt")
    monkeypatch.setenv("TOWN_NAME", "Zoersel")
    edit(folder / "meldpunt.yaml", "name: Wingene", "name: ${TOWN_NAME}")
    s = load_config(folder / "meldpunt.yaml").settings
    assert s.public_url == "https://meldpunt.wingene.example"
    assert s.database_url == "postgresql://u:p@db/meldpunt"
    assert s.town.name == "Zoersel"


def test_secret_key_comes_from_the_environment_and_is_never_printed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MELDPUNT_SECRET_KEY", "very-secret-value-123")
    s = load_config(folder / "meldpunt.yaml").settings
    assert s.secret_key is not None
    assert s.secret_key.get_secret_value() == "very-secret-value-123"
    assert "very-secret-value-123" not in repr(s) and "very-secret-value-123" not in str(s)


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELDPUNT_CONFIG", "/etc/meldpunt/meldpunt.yaml")
    assert config_path("other.yaml") == Path("other.yaml")
    assert config_path(None) == Path("/etc/meldpunt/meldpunt.yaml")
    monkeypatch.delenv("MELDPUNT_CONFIG")
    assert config_path(None) == Path("config/meldpunt.yaml")


def test_every_error_is_reported_with_its_line(folder: Path) -> None:
    main = folder / "meldpunt.yaml"
    edit(main, "log_level: info", "log_levle: info")
    edit(main, 'friday: ["08:30-12:00"]', 'friday: ["12:00-08:30"]')
    edit(main, "public_url: ${MELDPUNT_PUBLIC_URL:-http://127.0.0.1:8750}", "public_url: ftp://x")
    found = problems(main)
    text = "\n".join(found)
    assert f"meldpunt.yaml:{line_of(main, 'log_levle')}: log_levle:" in text
    assert "Extra inputs are not permitted" in text
    assert f"meldpunt.yaml:{line_of(main, 'friday:')}: office_hours.friday" in text
    assert "ends before it starts" in text
    assert "public_url: must start with http:// or https://" in text
    assert len(found) == 3


def test_unknown_default_department_and_duplicate_ids(folder: Path) -> None:
    main = folder / "meldpunt.yaml"
    edit(main, "default_department: front-desk", "default_department: onthaal")
    text = "\n".join(problems(main))
    assert "default_department 'onthaal' is not one of the departments" in text

    shutil.copy(SAMPLE / "meldpunt.yaml", main)
    edit(main, "id: environment", "id: technical-service")
    text = "\n".join(problems(main))
    assert "department ids must be unique: technical-service" in text


def test_rule_errors_come_with_settings_errors(folder: Path) -> None:
    main, rules = folder / "meldpunt.yaml", folder / "routing.yaml"
    edit(main, 'reference_prefix: "1750"', 'reference_prefix: "17-50"')
    edit(rules, "department: technical-service", "department: technische-dienst")
    found = problems(main)
    assert any(p.startswith(f"{main}:{line_of(main, 'reference_prefix')}: ") for p in found)
    assert any("letters or digits" in p for p in found)
    assert any(
        p.startswith(f"{rules}:{line_of(rules, 'technische-dienst')}:") and "technische-dienst" in p
        for p in found
    )


def test_broken_yaml_and_missing_files_say_where(folder: Path) -> None:
    main = folder / "meldpunt.yaml"
    assert problems(folder / "nope.yaml") == [f"{folder / 'nope.yaml'}: file not found"]
    edit(main, "  name: Wingene", "  name: [Wingene")
    [problem] = problems(main)
    assert problem.startswith(f"{main}:") and "not valid YAML" in problem

    shutil.copy(SAMPLE / "meldpunt.yaml", main)
    main.write_text(main.read_text(encoding="utf-8") + "\nlog_level: debug\n", encoding="utf-8")
    [problem] = problems(main)
    assert "duplicate key 'log_level'" in problem

    shutil.copy(SAMPLE / "meldpunt.yaml", main)
    (folder / "routing.yaml").unlink()
    [problem] = problems(main)
    assert problem == f"{folder / 'routing.yaml'}: file not found"
