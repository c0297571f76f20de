"""Start time of light `labeler` commands: `labeler --help` and `labeler label list` (on a small SQLite labeler made
in a temp dir), each run `--runs` times (default 5) as a fresh process; prints the median, the range, and the
heavy packages the command imported. Target: well under a second. Asserts nothing about time.

    .venv/bin/python bench/bench_cli_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench import _harness as h
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]

LABELER = Path(sys.executable).with_name("labeler")
# What a light command should not need to import (the server, the console, the SDK's client, the pipeline's imaging).
HEAVY = ("uvicorn", "starlette", "jinja2", "atproto_client", "alembic", "numpy", "PIL", "pdqhash", "labeler.service")
COMMANDS = {"labeler --help": ["--help"], "labeler label list": ["label", "list"]}


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds, and the CPU seconds of the process (user + system): the CPU figure moves less with the
    machine's load than the wall-clock one."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([str(LABELER), *args], env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported(args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The heavy packages the command loads (run in-process under `python -c`, then sys.modules is read)."""
    code = (
        "import sys\nfrom labeler.cli import cli\n"
        f"try:\n    cli({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print('imported:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("imported:"))
    return [m for m in line.removeprefix("imported:").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    h.print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
        env.update(LABELER_DID="did:plc:benchlabelerbenchlabel22", LABELER_DATABASE_URL=f"sqlite:///{work / 'l.db'}")
        subprocess.run([str(LABELER), "keys", "generate"], env=env, cwd=work, check=True, capture_output=True)
        for i in range(20):
            subprocess.run([str(LABELER), "label", "add", f"did:plc:subject{i:02d}", "spam"], env=env, cwd=work,
                           check=True, capture_output=True)  # fmt: skip
        rows = []
        for name, command in COMMANDS.items():
            timed(command, env, work)  # warm the page cache and the bytecode
            runs = [timed(command, env, work) for _ in range(args.runs)]
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            rows.append([
                name, f"{statistics.median(walls):.3f} s", f"{min(walls):.3f}–{max(walls):.3f} s",
                f"{statistics.median(cpus):.3f} s", ", ".join(imported(command, env, work)) or "none",
            ])  # fmt: skip
    headers = ["command", "median", "range", "CPU median", "heavy imports"]
    h.print_table(f"start time, median of {args.runs} runs", headers, rows)


if __name__ == "__main__":
    main()
