"""Fixtures the exchange types' tests share."""

from __future__ import annotations

from typing import Any

import pytest

from labeler.config import Settings


@pytest.fixture
def upload_settings(make_settings: Any) -> Settings:
    """A labeler whose upload API takes the token `tok`, whose exchanges may be on loopback, and whose processes
    see bank changes within a tenth of a second."""
    settings: Settings = make_settings(
        upload_tokens="tok", allow_private_fetch=True, extra={"pipeline": {"bank_poll_seconds": 0.1}}
    )
    return settings
