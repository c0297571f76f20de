"""Structured logs: one JSON object per line with ts/level/logger/msg, extras and exceptions as fields, uvicorn's
loggers in the same format, and secrets scrubbed in both formats."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from labeler.config import ConfigError, load_settings
from labeler.logs import (
    CHATTY_LOGGERS,
    REDACTED,
    UVICORN_LOGGERS,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    redact,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in UVICORN_LOGGERS}
    filters = {n: list(logging.getLogger(n).filters) for n in CHATTY_LOGGERS}
    yield
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def record(
    msg: str, *args: Any, level: int = logging.INFO, name: str = "labeler.test", **extra: Any
) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_fields_and_the_extras() -> None:
    line = JsonFormatter().format(record("wrote %d labels\nand more", 3, batch=7, uri="at://x", obj=object()))
    assert "\n" not in line  # one record, one line, whatever the message holds
    data = json.loads(line)
    assert data["level"] == "info" and data["logger"] == "labeler.test"
    assert data["msg"] == "wrote 3 labels\nand more"
    assert data["ts"].endswith("Z") and "T" in data["ts"]
    assert data["batch"] == 7 and data["uri"] == "at://x" and data["obj"].startswith("<object")
    assert not {"args", "levelno", "pathname", "exc_info"} & set(data)


def test_exceptions_are_a_field_not_extra_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("labeler.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    data = json.loads(JsonFormatter().format(rec))
    assert data["level"] == "error" and data["exc_type"] == "ValueError"
    assert "Traceback" in data["exc"] and "ValueError: boom" in data["exc"]


def test_uvicorn_access_lines_get_request_fields() -> None:
    rec = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/xrpc/_health", "1.1", 200, name="uvicorn.access")
    data = json.loads(JsonFormatter().format(rec))
    assert data["method"] == "GET" and data["path"] == "/xrpc/_health" and data["status"] == 200
    assert data["client"] == "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to postgresql://labeler:hunter2@postgres:5432/labeler", "hunter2"),
        ("postgresql+asyncpg://u:p%40ss@h/db failed", "p%40ss"),
        ("authorization: Bearer eyJhbGciOiJFUzI1NksifQ.eyJpc3MiOiJ4In0.c2ln", "eyJhbGci"),
        ("header Basic YWRtaW46c2VjcmV0", "YWRtaW46c2VjcmV0"),
        (
            "HTTP Request: GET https://graph.facebook.com/v26.0/1/threat_updates/?limit=100"
            '&access_token=1234567890%7Csecretvalue0123456789 "HTTP/1.1 200 OK"',
            "secretvalue0123456789",
        ),
    ],
)
def test_secrets_in_messages_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text) and REDACTED in redact(text)
    assert secret not in JsonFormatter().format(record(text))
    assert secret not in TextFormatter().format(record(text))


def test_secret_named_extras_are_redacted() -> None:
    data = json.loads(
        JsonFormatter().format(
            record("login", admin_password="s3cret", token="t0k", nested={"api_key": "k3y", "ok": "postgres://a:b@c/d"})
        )
    )
    assert data["admin_password"] == REDACTED and data["token"] == REDACTED
    assert data["nested"] == {"api_key": REDACTED, "ok": f"postgres://a:{REDACTED}@c/d"}


def test_text_format_redacts_tracebacks_too() -> None:
    try:
        raise RuntimeError("cannot reach postgresql://labeler:hunter2@db/labeler")
    except RuntimeError:
        rec = logging.LogRecord("labeler.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = TextFormatter().format(rec)
    assert "hunter2" not in out and "RuntimeError" in out


def test_configure_logging_routes_uvicorn_through_one_json_handler(restore_logging: None) -> None:
    stream = io.StringIO()
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn would
    configure_logging("info", "json", stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("labeler.writer").warning("slow commit", extra={"ms": 12})
    logging.getLogger("labeler.writer").debug("not at info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["logger"], x["msg"]) for x in lines] == [
        ("uvicorn.error", "Started server process [42]"),
        ("labeler.writer", "slow commit"),
    ]
    assert lines[1]["ms"] == 12
    assert all(not logging.getLogger(n).handlers for n in UVICORN_LOGGERS)


def test_log_format_setting_is_validated() -> None:
    assert load_settings(env={"LABELER_LOG_FORMAT": "json"}).log_format == "json"
    assert load_settings(env={}).log_format == "text"
    with pytest.raises(ConfigError, match="LABELER_LOG_FORMAT"):
        load_settings(env={"LABELER_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("level", ["info", "debug"])
def test_httpx_request_lines_are_debug(restore_logging: None, level: str) -> None:
    """httpx logs every request at INFO (one line per blob fetch); ours shows them only at LABELER_LOG_LEVEL=debug."""
    stream = io.StringIO()
    configure_logging(level, "text", stream=stream)
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        client.get("https://pds.example/xrpc/com.atproto.sync.getBlob?did=did:plc:a&cid=b")
    logging.getLogger("labeler.test").info("what the labeler did")
    lines = stream.getvalue().splitlines()
    assert any(" INFO labeler.test: what the labeler did" in line for line in lines)
    requests = [line for line in lines if "HTTP Request: GET https://pds.example/" in line]
    assert len(requests) == (0 if level == "info" else 1), lines
    assert all(" DEBUG httpx: " in line for line in requests)
