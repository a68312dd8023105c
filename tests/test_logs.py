"""Structured logs: JSON off a terminal, credentials masked wherever they appear."""

from __future__ import annotations

import io
import json

from detente.logs import REDACTED, configure_logging, get_logger


def capture(secrets: tuple[str, ...] = ()) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", stream=stream, secrets=secrets)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_events_with_fields_when_not_a_terminal() -> None:
    stream = capture()
    get_logger("t").info("pull.page", system="hubspot", count=100)
    (event,) = lines(stream)
    assert event["event"] == "pull.page"
    assert event["system"] == "hubspot" and event["count"] == 100
    assert event["level"] == "info" and "timestamp" in event


def test_credential_named_fields_are_masked_whatever_their_value() -> None:
    stream = capture()
    get_logger("t").info("auth", access_token="abc", password="hunter2", client_secret="s3", count=3)
    (event,) = lines(stream)
    assert event["access_token"] == REDACTED
    assert event["password"] == REDACTED
    assert event["client_secret"] == REDACTED
    assert event["count"] == 3


def test_credential_shapes_are_masked_inside_free_text() -> None:
    stream = capture()
    log = get_logger("t")
    log.warning("http", url="https://x/token?grant_type=password&password=pw123&client_id=a")
    log.warning("http", header="Authorization: Bearer 00Dxx0000001gPL!AQ4AQFk2y8bKqhvBqC")
    log.warning("http", text="token pat-na1-11aa22bb-33cc-44dd-55ee-66ff77aa88bb was refused")
    text = "\n".join(json.dumps(e) for e in lines(stream))
    assert "pw123" not in text
    assert "AQ4AQFk2y8bKqhvBqC" not in text
    assert "66ff77aa88bb" not in text
    assert "client_id=a" in text  # not a secret


def test_registered_secret_values_are_masked_verbatim() -> None:
    stream = capture(secrets=("sandbox-secret-XYZ123",))
    get_logger("t").error("sync.failed", error=RuntimeError("login with sandbox-secret-XYZ123 failed"),
                          nested={"detail": ["sandbox-secret-XYZ123"]})
    out = stream.getvalue()
    assert "sandbox-secret-XYZ123" not in out
    assert REDACTED in out
