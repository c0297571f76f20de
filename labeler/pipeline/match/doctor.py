"""What `labeler doctor` says about the matcher: whether lookups can be answered, from which banks, and the
HMA failure that loses matches without an error (HMA #1318: an index of exactly one PDQ hash never matches).

One finding, `matcher`. Embedded banks are counted in our database; HMA is asked over its API (`/status`,
`/c/banks`, `/m/index/status`), as the running service would ask it.
"""

from __future__ import annotations

from labeler.config import Settings
from labeler.identity.doctor import Finding
from labeler.pipeline.banks import BankStore
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.match.hma import FILLER_BANK, HmaMatcher, HmaStatus
from labeler.store.engine import create_engine

CHECK = "matcher"


async def matcher_findings(settings: Settings) -> list[Finding]:
    if settings.matcher == "hma":
        return [await _hma_finding(settings.hma_url)]
    return [await _embedded_finding(settings.database_url)]


async def _embedded_finding(database_url: str) -> Finding:
    engine = create_engine(database_url)
    try:
        banks = await BankStore(engine).all_banks()
    except Exception as exc:  # the database check reports the database itself
        return Finding(CHECK, "fail", f"embedded: cannot read the banks ({type(exc).__name__})", "labeler db upgrade")
    finally:
        await engine.dispose()
    if not banks:
        return Finding(CHECK, "warn", "embedded: no banks, nothing can match", "labeler bank import NAME FILE --create")
    counts: dict[str, int] = {}
    for bank in banks:
        counts[bank.signal_type] = counts.get(bank.signal_type, 0) + bank.entries
    return Finding(CHECK, "ok", f"embedded: {len(banks)} banks, {_sizes(counts)}")


async def _hma_finding(url: str) -> Finding:
    matcher = HmaMatcher(url)
    try:
        status = await matcher.status()
    except MatchFailure as exc:
        return Finding(CHECK, "fail", f"HMA at {url}: {exc}", "start HMA, or set LABELER_HMA_URL to where it runs")
    finally:
        await matcher.aclose()
    return hma_finding(url, status)


def hma_finding(url: str, status: HmaStatus) -> Finding:
    """The finding for what HMA said about itself."""
    if not status.ready:
        return Finding(
            CHECK,
            "warn",
            f"HMA at {url} answers {status.status}: lookups wait until its index is loaded",
            "HMA loads its index after start (TASK_INDEX_CACHE); if this lasts, check HMA's scheduler and database",
        )
    sizes = _sizes(status.index_sizes)
    if status.index_sizes.get("pdq") == 1:
        return Finding(
            CHECK,
            "fail",
            f"HMA at {url}: its PDQ index holds exactly one hash, which HMA never matches (HMA #1318)",
            f"restart the labeler or run any `labeler bank` command: it adds the reserved bank {FILLER_BANK}",
        )
    if status.banks is None:
        return Finding(CHECK, "ok", f"HMA at {url}: index loaded, {sizes} (banks unknown: no curator role)")
    names = [b.name for b in status.banks if b.name != FILLER_BANK]
    message = f"HMA at {url}: index loaded, {len(names)} banks, {sizes}"
    if not names:
        return Finding(CHECK, "warn", message + ": nothing can match", "labeler bank import NAME FILE --create")
    if FILLER_BANK not in {b.name for b in status.banks}:
        return Finding(
            CHECK,
            "warn",
            message + f"; the reserved bank {FILLER_BANK} is missing: a single banked hash would never match",
            "restart the labeler or run any `labeler bank` import: it adds the reserved bank again",
        )
    return Finding(CHECK, "ok", message)


def _sizes(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n} hashes" for name, n in sorted(counts.items())) or "no hashes"
