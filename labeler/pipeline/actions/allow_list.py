"""Adding a wrongly matched image to the allow-list bank (`[actions] allow_list_bank`), on either matcher.

The bank is made on first use (for PDQ, so near copies of the image are recognised too); an existing bank of
another signal type gets the image's hash of that type. Its entries are never acted on, and an image near one is
not acted on at all (`labeler.pipeline.actions.screen`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from labeler.pipeline.banks import BankError, BankStore, EntryInput
from labeler.pipeline.match.base import Matcher
from labeler.pipeline.match.hma import HmaMatcher
from labeler.pipeline.signals import PDQ


class AllowList:
    def __init__(self, bank: str | None, matcher: Matcher, banks: BankStore) -> None:
        self.bank = bank
        self.matcher = matcher
        self.banks = banks

    async def add(self, evidence: dict[str, Any], note: str) -> str:
        """Add the matched image's hash; returns the bank's name. BankError without an allow-list bank, or when
        the image has no hash of the bank's type (an undecodable image has no PDQ: disable the entry instead)."""
        if self.bank is None:
            raise BankError("no allow-list bank is configured ([actions] allow_list_bank)")
        if isinstance(self.matcher, HmaMatcher):
            if self.bank not in {b.name for b in await self.matcher.list_banks()}:
                await self.matcher.create_bank(self.bank)
            await self.matcher.add_signal(self.bank, _hash(evidence, PDQ), note=note)
            return self.bank
        known = {b.name: b.signal_type for b in await self.banks.all_banks()}
        if self.bank not in known:
            with contextlib.suppress(BankError):  # made meanwhile by another process
                await self.banks.create(self.bank, note="images people found wrongly matched: never acted on")
        signal_type = known.get(self.bank, PDQ)
        entry = EntryInput(_hash(evidence, signal_type), external_id=f"job-{evidence.get('job_id')}", note=note)
        await self.banks.add_entries(self.bank, [entry])
        return self.bank


def _hash(evidence: dict[str, Any], signal_type: str) -> str:
    value = evidence.get(signal_type)
    if not isinstance(value, str):
        raise BankError(f"the image has no {signal_type} hash to allow-list; disable the bank entry instead")
    return value
