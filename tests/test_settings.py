"""Settings: YAML plus DETENTE_ environment variables, every problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from detente.errors import SettingsError
from detente.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detente.yaml"
    path.write_text(text)
    return path


def test_shipped_example_is_valid() -> None:
    settings = load_settings(Path(__file__).parents[1] / "config" / "detente.yaml")
    assert settings.salesforce.auth == "password"


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "salesforce:\n  timeout_seconds: abc\n  bogus: 1\nlog:\n  level: loud\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    problems = info.value.problems
    assert len(problems) == 3
    assert f"{path}:2:3: salesforce.timeout_seconds" in problems[0]
    assert any(f"{path}:3:3: unknown key 'salesforce.bogus'" in p for p in problems)
    assert any(f"{path}:5:3: log.level" in p and "'debug'" in p for p in problems)


def test_environment_overrides_file_and_is_named_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "hubspot:\n  timeout_seconds: 5\n")
    monkeypatch.setenv("DETENTE_HUBSPOT__TOKEN", "pat-na1-from-env")
    assert load_settings(path).hubspot.token.get_secret_value() == "pat-na1-from-env"  # type: ignore[union-attr]
    monkeypatch.setenv("DETENTE_HUBSPOT__TIMEOUT_SECONDS", "-1")
    with pytest.raises(SettingsError, match="environment variable DETENTE_HUBSPOT__TIMEOUT_SECONDS"):
        load_settings(path)


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "hubspot:\n  token: [pat-na1-leaky-secret]\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "leaky" not in str(info.value)


def test_malformed_yaml_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "salesforce:\n  auth: password\n   bad: [\n")
    with pytest.raises(SettingsError, match=rf"{path}:\d+:\d+"):
        load_settings(path)


def test_missing_explicit_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--config PATH or set DETENTE_CONFIG"):
        load_settings(tmp_path / "nope.yaml")
