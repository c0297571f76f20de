"""Process-wide logging: human text or one JSON object per line (`LABELER_LOG_FORMAT`), secrets scrubbed.

JSON lines carry `ts`, `level`, `logger`, `msg`, any `extra={...}` fields, and `exc` for a traceback, so a log
shipper can index them without parsing text. Uvicorn's own loggers are routed through the same handler (its
access lines gain `method`, `path`, `status` fields), so a container emits one format only.

Nothing here should ever print a secret: URL passwords, `Authorization` credentials and extra fields whose name
looks secret (password, token, secret, key…) are replaced before a record is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

FORMATS: Final = ("text", "json")
REDACTED: Final = "[redacted]"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Uvicorn configures these itself unless told not to; we clear their handlers so they reach ours.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Libraries whose INFO lines are per request (httpx: one per blob fetch, DID resolution, PDS call): DEBUG for us.
CHATTY_LOGGERS: Final = ("httpx",)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is worth a field.
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}
_SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|authori[sz]ation|cookie|credential|private|api_?key|jwt", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.I)
_AUTH_VALUE = re.compile(r"(?P<scheme>\b(?:bearer|basic))\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
# A URL's query parameter named like a credential: Graph API tokens travel as `?access_token=appid|secret`, and
# httpx's DEBUG lines hold whole URLs.
_QUERY_SECRET = re.compile(r"(?P<head>[?&][\w.-]*(?:token|secret|passw(?:or)?d|api_?key)[\w.-]*=)[^&\s#\"']+", re.I)


def redact(text: str) -> str:
    """Scrub credentials that can hide inside free text: `scheme://user:PASSWORD@host`, `Bearer TOKEN` and
    `?access_token=TOKEN`."""
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)
    text = _QUERY_SECRET.sub(rf"\g<head>{REDACTED}", text)
    return _AUTH_VALUE.sub(rf"\g<scheme> {REDACTED}", text)


def _scrub(name: str, value: Any) -> Any:
    if _SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scrub(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub("", v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped by `json.dumps`)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            out.update(client=client, method=method, path=redact(str(path)), http_version=http_version, status=status)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            out[key if key not in out else f"extra_{key}"] = _scrub(key, value)
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the same scrubbing of the message and traceback."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}: {fmt!r}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


class DemoteToDebug(logging.Filter):
    """Turns a chatty library's INFO lines into DEBUG ones: shown at LABELER_LOG_LEVEL=debug, not at info."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str = "info", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Send every log record, ours and uvicorn's, through one handler on stderr in the chosen format.

    Call `uvicorn.run(..., log_config=None)` afterwards so uvicorn does not install its own handlers again.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DemoteToDebug) for f in logger.filters):
            logger.addFilter(DemoteToDebug())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # follow the root level, whatever an earlier uvicorn config set
        logger.disabled = False
