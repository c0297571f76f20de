"""Every exchange type stops a fetch when its exchange hands back a paging link (or token, or checkpoint) it gave
before in the same fetch, a paging bug that would otherwise have the fetch read the same pages for ever; once the
exchange pages properly again, the next fetch resumes from the last page applied and ends, nothing banked twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pipeline.corpus import random_hashes
from support.server import serve_in_thread

from labeler.exchanges.types import exchange_type

from .harness import world as exchange_world
from .ncmec_standin import Entry, NcmecStandin
from .stopncii_standin import Record as StopNciiRecord
from .stopncii_standin import StopNciiStandin
from .tat_standin import Record as TatRecord
from .tat_standin import TatStandin
from .threatexchange_standin import VERSION, Descriptor, Indicator, ThreatExchangeStandin

H = random_hashes(5, seed=77)  # five entries: three pages of two
T0 = 1_700_000_000


def _stuck(kind: str) -> tuple[Any, dict[str, str], dict[str, str], str]:
    """A stand-in of exchange type `kind` holding H that pages in a circle, its credentials, the exchange's other
    options, and what follows the served URL in its base URL."""
    if kind == "ncmec":
        ncmec = NcmecStandin(entries=[Entry(f"image{i}", T0 + i, {"pdq": h}) for i, h in enumerate(H)], stuck={3})
        return ncmec, {"user": ncmec.user, "password": ncmec.password}, {}, ""
    if kind == "stopncii":
        stopncii = StopNciiStandin(records=[StopNciiRecord(h, T0 + i) for i, h in enumerate(H)], stuck=True)
        keys = {"subscription_key": stopncii.subscription_key, "fetch_key": stopncii.fetch_key}
        return stopncii, keys, {}, "/v1"
    if kind == "tat":
        tat = TatStandin(records=[TatRecord(100 + i, h, T0 + i) for i, h in enumerate(H)], stuck=True)
        return tat, {"user": tat.user, "password": tat.password}, {}, ""
    shared = [Indicator(str(1000 + i), "HASH_PDQ", h, T0 + i, [Descriptor(str(2000 + i), "5550001234")])
              for i, h in enumerate(H)]  # fmt: skip
    te = ThreatExchangeStandin(indicators=shared, stuck=True)
    return te, {"token": te.token}, {"privacy_group": te.privacy_group}, VERSION


@pytest.mark.parametrize("kind", ["ncmec", "stopncii", "tat", "threatexchange"])
async def test_a_paging_link_given_again_stops_the_fetch_and_the_next_resumes(
    kind: str, database_url: str, tmp_path: Path
) -> None:
    standin, credentials, options, path = _stuck(kind)
    with serve_in_thread(standin.app()) as server:
        async with exchange_world(
            database_url, tmp_path / "keys", standin=standin, url=server.url + path, type_=kind,
            carries=exchange_type(kind).signal_types, credentials=credentials, options=options, name="x", bank="B",
            now=T0 + 100,
        ) as world:  # fmt: skip
            stopped = await world.fetch()
            assert stopped.error is not None and "a paging link it had given before" in stopped.error, stopped
            assert not stopped.complete and 2 <= stopped.added < len(H)
            asked = len(standin.requests)
            assert asked <= 4  # the pages before the repeat, not the same page for ever
            standin.stuck = set() if kind == "ncmec" else False
            resumed = await world.fetch()
            assert (resumed.error, resumed.complete) == (None, True)
            assert stopped.added + resumed.added == len(H) and set(await world.banked()) == set(H)
            assert len(standin.requests) - asked <= 3  # from the last page applied, not from the start
