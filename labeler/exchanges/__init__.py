"""Hash exchanges that fill banks by themselves: each configured exchange (`labeler exchange add`) feeds one bank.

A fetch reads the exchange page by page through its type's client (`types.ExchangeType`, one module per type,
built on python-threatexchange's parsers), applies every page's additions, updates and deletions to the bank
through `BankStore` (so the bank change log makes them matchable in every process, as imports are), and
checkpoints after the page, so a crash or an outage resumes where it stopped. `types` lists the implemented ones.
"""
