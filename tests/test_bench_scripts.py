"""The benchmark scripts are not run by the suite (they print figures and take minutes), so a change elsewhere can
leave one unable to start: bench_media once imported a helper that bench_jobs had dropped. Importing each one
catches that without running it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(path.stem for path in BENCH.glob("bench_*.py"))


def test_the_benchmarks_are_found() -> None:
    assert "bench_media" in SCRIPTS and "bench_jobs" in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_script_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "main", None)), f"bench/{name}.py has no main()"
