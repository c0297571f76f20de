"""`labeler.protocol` stays pure: no I/O layer is imported by it, directly or at run time.

httpx is checked only as a direct import: the `atproto` SDK's validators that `syntax` reuses live in a package
whose `__init__` imports its HTTP client, which our code never calls.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import labeler.protocol

RUNTIME_FORBIDDEN = ("starlette", "sqlalchemy", "uvicorn", "asyncpg", "aiosqlite", "labeler.store", "labeler.xrpc")
DIRECT_FORBIDDEN = (*RUNTIME_FORBIDDEN, "httpx", "websockets", "labeler.service", "labeler.pipeline")
MODULES = [f"labeler.protocol.{m.name}" for m in pkgutil.iter_modules(labeler.protocol.__path__)]


def test_no_direct_imports_of_io_layers() -> None:
    for path in Path(labeler.protocol.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(DIRECT_FORBIDDEN), f"{path.name} imports {name}"


def test_importing_protocol_loads_no_io_layers() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + f"print(','.join(sorted(m for m in sys.modules if m.startswith({RUNTIME_FORBIDDEN!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing labeler.protocol loaded {out}"
