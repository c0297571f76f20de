"""A normal `pytest` run of the browser tests names the folder their screenshots went to (Done-means: "under a
folder they print"), whatever pytest's output capture does with a fixture's own output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_of_the_browser_tests_names_the_screenshots_folder(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    env = {**os.environ, "CONSOLE_SCREENSHOTS": str(folder)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/console/test_browser.py", "-k", "without_a_session",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    if "1 skipped" in run.stdout and os.environ.get("CI") != "true":
        pytest.skip("the browser tests are skipped here (no chromium or playwright)")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"console screenshots: {folder}\n" in run.stdout
    assert (folder / "sign-in.png").stat().st_size > 0
