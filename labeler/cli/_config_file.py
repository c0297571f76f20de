"""labeler.toml as the operator's file: where it is, writing a new one, and recording a DID in it.

Written as text (not by a TOML library) so comments survive and `labeler did create` changes one line only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

from labeler.config import DEFAULT_CONFIG_FILE, ENV_PREFIX

_DID_LINE: Final = re.compile(r"^#?\s*did\s*=.*$", re.MULTILINE)
_TABLE: Final = re.compile(r"^\s*\[", re.MULTILINE)


def config_path() -> Path:
    """`LABELER_CONFIG`, else ./labeler.toml (the same rule `load_settings` reads by)."""
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_FILE)


def toml_value(value: Any) -> str:
    """A TOML literal for str / bool / list / inline table (JSON string escapes are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)


def save_did(path: Path, did: str) -> bool:
    """Set the top-level `did` in the config file (replacing a `did =` or `# did =` line); False if no file."""
    if not path.is_file():
        return False
    text = path.read_text()
    line = f"did = {toml_value(did)}"
    first_table = _TABLE.search(text)
    cut = first_table.start() if first_table else len(text)
    head = text[:cut]
    head = _DID_LINE.sub(line, head, count=1) if _DID_LINE.search(head) else f"{line}\n{head}"
    path.write_text(head + text[cut:])
    return True
