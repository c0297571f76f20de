"""One loader for test vectors: JSON case lists (ids from each case's note) and one-per-line syntax files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


def json_cases(relative: str) -> list[Any]:
    cases = json.loads((VECTORS / relative).read_text())
    return [pytest.param(case, id=case["note"]) for case in cases]


def lines(relative: str) -> list[str]:
    out = []
    for line in (VECTORS / relative).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            out.append(line)
    return out
