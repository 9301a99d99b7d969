from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SETTINGS, Secret, SettingError, load, redact_url

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented_in_docs_configuration(setting: object) -> None:
    assert f"`{setting.name}`" in CONFIGURATION.read_text()  # type: ignore[attr-defined]


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load({})

    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.database_url is None
    assert settings.migrate_on_start is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DB_POOL_MAX", "0"),
        ("MIGRATE_ON_START", "maybe"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingError, match=name):
        load({name: value})


def test_the_database_password_never_shows() -> None:
    settings = load({"DATABASE_URL": "postgresql://app:hunter2@db:5432/metrics"})

    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.database_url)
    assert redact_url(settings.require_database_url()) == "postgresql://app:****@db:5432/metrics"
    assert isinstance(settings.database_url, Secret)
