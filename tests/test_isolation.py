"""The suite is isolated from the user's configuration: a hostile `labeler.toml` in the working directory and
hostile `LABELER_*` variables in the environment (as after `labeler init` in the checkout, or an exported
setting) leave a slice of the suite green, run in a subprocess exactly as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each of these, read by the tests' settings, fails a test in the slice below.
HOSTILE_TOML = """\
log_format = "json"
max_body_bytes = 16
max_query_patterns = 1
matcher = "hma"
hma_url = "http://127.0.0.1:9"
workers = 4

[declaration]
label_values = ["hostile"]
"""
HOSTILE_ENV = {
    "LABELER_LOG_FORMAT": "xml",  # invalid: every load_settings would raise
    "LABELER_ADMIN_PASSWORD": "hostile",
    "LABELER_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing",
    "LABELER_KEYS_DIR": "/nonexistent/keys",
    "LABELER_MAX_SUBSCRIBERS": "1",
}
SLICE = [
    "tests/deploy/test_logs.py::test_log_format_setting_is_validated",
    "tests/xrpc/test_emit_event.py::test_create_on_strong_ref_and_repo_ref[sqlite]",
    "tests/xrpc/test_query_labels.py::test_exact_prefix_and_star[sqlite]",
]


def test_a_hostile_labeler_toml_and_environment_leave_the_suite_green(tmp_path: Path) -> None:
    (tmp_path / "labeler.toml").write_text(HOSTILE_TOML)
    (tmp_path / "other.toml").write_text(HOSTILE_TOML)
    env = {**os.environ, **HOSTILE_ENV, "LABELER_CONFIG": str(tmp_path / "other.toml")}
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
            *(str(ROOT / test) for test in SLICE),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(SLICE)} passed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labeler.toml", "other.toml"]  # nothing written here
