"""Tuning of the job runner from the `[pipeline]` table of `labeler.toml` (README "Pipeline"); safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from labeler.config import ConfigError, Settings


@dataclass(frozen=True)
class PipelineOptions:
    hash_processes: int = 0  # 0: one per worker, at most one per CPU
    lease_seconds: float = 120.0  # a claimed job returns to the queue this long after its worker vanished
    max_attempts: int = 10  # fetch attempts before a job ends as error/gave-up (matcher outages never count)
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    matcher_retry_cap_seconds: float = 300.0
    poll_seconds: float = 1.0  # idle workers look for due jobs this often (new jobs in-process wake them at once)
    bank_poll_seconds: float = 2.0  # embedded banks: how soon another process's bank change is picked up
    stop_timeout_seconds: float = 30.0  # graceful stop waits this long for in-flight jobs
    exchange_fetch_seconds: float = 3600.0  # workers fetch each hash exchange this often (0: only on demand)
    exchange_fetch_pages: int = 1000  # pages one fetch reads of an exchange; the next goes on after the others'

    def processes_for(self, workers: int) -> int:
        if self.hash_processes > 0:
            return self.hash_processes
        return max(1, min(workers, os.cpu_count() or 1))


def load_options(settings: Settings) -> PipelineOptions:
    table: Any = settings.extra.get("pipeline", {})
    if not isinstance(table, dict):
        raise ConfigError("[pipeline] must be a table")
    known = {f.name: f.type for f in fields(PipelineOptions)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(f"[pipeline]: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in table.items():
        kind = int if known[name] == "int" else float
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"[pipeline] {name} must be a non-negative number")
        values[name] = kind(value)
    options = PipelineOptions(**values)
    if options.max_attempts < 1 or options.exchange_fetch_pages < 1 or options.lease_seconds <= 0:
        raise ConfigError("[pipeline] max_attempts and exchange_fetch_pages must be ≥ 1 and lease_seconds > 0")
    return options
