"""The ``digest`` and ``webhook`` settings: every problem reported at once, located and explained,
secrets never shown; the deployment example's commented sections are valid when uncommented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detente.cli import app
from detente.errors import SettingsError
from detente.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "detente.example.yaml"
HOOK = "https://hooks.slack.com/services/T000/B000/NotARealSecretButLongEnough"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("DETENTE_")]:
        monkeypatch.delenv(name)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "detente.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    return caught.value.problems


def test_every_digest_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
digest:
  schedule: {day_of_week: mnday, hour: 8}
  timezone: Mars/Olympus
  period: fortnight
  dashboard_url: ftp://board
  smtp:
    port: 70000
    from_address: not-an-address
  audiences:
    sales: [cro@example.com, nobody]
    interns: [a@example.com]
""")
    path = tmp_path / "detente.yaml"
    expected = {
        f"{path}:2:3: digest.schedule: ": "not a cron schedule (Invalid weekday name \"mnday\")",
        f"{path}:3:3: digest.timezone: ": "unknown time zone 'Mars/Olympus'; expected an IANA name",
        f"{path}:4:3: digest.period: ": "'week', 'month', 'quarter' or 'year'",
        f"{path}:5:3: digest.dashboard_url: ": "not an http(s) URL",
        f"{path}:7:5: digest.smtp.port: ": "less than or equal to 65535",
        f"{path}:8:5: digest.smtp.from_address: ": "the sender 'not-an-address' is not an email address",
        f"{path}:10:5: digest.audiences.sales: ": "the recipient 'nobody' is not an email address",
        f"{path}:11:5: unknown key 'digest.audiences.interns'": "remove it or check its spelling",
    }
    assert len(found) == len(expected), found
    for where, what in expected.items():
        assert [p for p in found if p.startswith(where) and what in p], (where, found)


def test_an_enabled_digest_says_what_it_still_needs(tmp_path: Path) -> None:
    found = problems(tmp_path, "digest:\n  enabled: true\n")
    assert found == [f"{tmp_path / 'detente.yaml'}:1:1: digest: Value error, enabled is true but smtp.host (the SMTP "
                     "server to send through) and smtp.from_address (the sender, e.g. detente@yourorg.com) and "
                     "audiences (at least one address under marketing, sales or leadership) are not set; set them "
                     "or set digest.enabled: false"]


def test_contradictory_smtp_security_is_refused_without_showing_the_password(tmp_path: Path) -> None:
    found = problems(tmp_path, "digest:\n  smtp:\n    ssl: true\n    starttls: true\n    password: hunter2-secret\n")
    assert len(found) == 1
    assert "choose one: ssl (implicit TLS, usually port 465) or starttls" in found[0]
    assert "a password is set without a username" in found[0] and "hunter2" not in found[0]


def test_a_bad_webhook_url_is_located_and_never_quoted(tmp_path: Path) -> None:
    found = problems(tmp_path, "webhook:\n  enabled: true\n  url: hooks.slack.com/services/T0/B0/leakyTokenValue\n"
                               "  retries: 99\n")
    assert len(found) == 2
    assert found[0].startswith(f"{tmp_path / 'detente.yaml'}:3:3: webhook.url: Value error, not an http(s) URL")
    assert "webhook.retries" in found[1] and not [p for p in found if "leaky" in p]


def test_an_enabled_webhook_without_a_url_names_the_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, "webhook:\n  enabled: true\n") == [
        f"{tmp_path / 'detente.yaml'}:1:1: webhook: Value error, enabled is true but url is not set; set "
        "DETENTE_WEBHOOK__URL to the incoming-webhook URL or set webhook.enabled: false"]


def test_a_bad_url_from_the_environment_names_the_variable_not_the_value(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETENTE_WEBHOOK__URL", "gopher://leakyTokenValue")
    found = problems(tmp_path, "log:\n  level: info\n")
    assert found[0].startswith("environment variable DETENTE_WEBHOOK__URL: webhook.url: Value error")
    assert "leaky" not in found[0]


def test_secrets_from_the_environment_are_registered_and_masked(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "detente.yaml"
    path.write_text("digest:\n  smtp:\n    host: smtp.example.com\n    username: detente\nwebhook:\n  enabled: true\n")
    monkeypatch.setenv("DETENTE_WEBHOOK__URL", HOOK)
    monkeypatch.setenv("DETENTE_DIGEST__SMTP__PASSWORD", "smtp-Secret-123")
    settings = load_settings(path)
    assert set(settings.secret_values()) >= {HOOK, "/services/T000/B000/NotARealSecretButLongEnough",
                                             "smtp-Secret-123"}
    assert settings.digest.smtp.effective_port == 587 and settings.digest.smtp.use_starttls
    shown = CliRunner().invoke(app, ["--config", str(path), "settings"])
    assert shown.exit_code == 0, shown.output
    assert "NotARealSecret" not in shown.stdout and "smtp-Secret" not in shown.stdout
    dumped = json.loads(shown.stdout)
    assert dumped["webhook"]["url"] == dumped["digest"]["smtp"]["password"] == "**********"


def test_the_example_s_commented_sections_are_valid_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE.read_text()
    block = text[text.index("\n# digest:\n") + 1:]
    uncommented = "\n".join(re.sub(r"^# ?", "", line) for line in block.splitlines() if line.startswith("#"))
    # Only the YAML: from "digest:" to the prose that follows it, then from "webhook:" on.
    digest_part = uncommented[:uncommented.index("\n\nBreach alerts")]
    webhook_part = uncommented[uncommented.index("webhook:"):]
    path = tmp_path / "detente.yaml"
    path.write_text(f"{digest_part}\n{webhook_part}\n")
    monkeypatch.setenv("DETENTE_WEBHOOK__URL", HOOK)
    settings = load_settings(path)
    assert settings.digest.enabled and settings.digest.schedule.fields() == {"day_of_week": "mon", "hour": 8,
                                                                             "minute": 0}
    assert settings.digest.audiences.leadership == ["cro@yourorg.com", "cmo@yourorg.com"]
    assert settings.webhook.enabled and settings.webhook.breaches_per_message == 10
