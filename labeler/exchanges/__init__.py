"""Hash exchanges that fill banks by themselves: each configured exchange (`labeler exchange add`) feeds one bank.

A fetch reads the exchange page by page through python-threatexchange's client for its type, applies every page's
additions, updates and deletions to the bank through `BankStore` (so the bank change log makes them matchable in
every process, as imports are), and checkpoints after the page, so a crash or an outage resumes where it stopped.
Implemented types: NCMEC hash sharing (`ncmec`). StopNCII, Tech Against Terrorism and ThreatExchange are named in
the command line but refused until they are built.
"""

from __future__ import annotations

from typing import Final

IMPLEMENTED: Final = ("ncmec",)
PLANNED: Final = ("stopncii", "tat", "threatexchange")
