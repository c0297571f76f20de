"""`labeler doctor`: what the network finds when it looks for this labeler, and why labels would not show.

"Labels are stored but don't show" is the most common labeler complaint (protocol.md §8 item 1). Each check
answers one cause with ok / warn / fail and a fix (`identity`: DID, key, endpoint, declaration, values;
`signatures`: what queryLabels and subscribeLabels serve, verified as consumers verify it). `LocalFacts` are read
from our own database and keyring first, so the checks themselves only talk to the network.
"""

from __future__ import annotations

from typing import Final

import httpx

from labeler.identity.doctor.findings import Finding, LocalFacts, Run, healthy
from labeler.identity.doctor.identity import (
    check_declaration,
    check_document,
    check_endpoint,
    check_label_key,
    check_own_content,
    check_reachable,
    check_value_syntax,
)
from labeler.identity.doctor.signatures import WINDOW, check_query_labels, check_subscribe_labels
from labeler.identity.resolver import DidResolver

__all__ = ["DEFAULT_WS_WAIT", "WINDOW", "Finding", "LocalFacts", "diagnose", "healthy"]

DEFAULT_WS_WAIT: Final = 2.0


async def diagnose(
    facts: LocalFacts,
    resolver: DidResolver,
    http: httpx.AsyncClient,
    *,
    pds_url: str | None = None,
    ws_wait: float = DEFAULT_WS_WAIT,
) -> list[Finding]:
    """Run every check; a check whose input is missing (no document, endpoint down) is reported as skipped."""
    run = Run(facts, resolver, http, pds_url, ws_wait)
    endpoint_checks = ("endpoint-reachable", "query-labels", "subscribe-labels")
    document = await check_document(run)
    if document is None:
        run.skip("no DID document", "label-key", "labeler-endpoint", *endpoint_checks, "declaration", "declared-values")
    else:
        check_label_key(run, document)
        endpoint = check_endpoint(run, document)
        if endpoint is None:
            run.skip("no usable endpoint", *endpoint_checks)
        elif await check_reachable(run, endpoint):
            await check_query_labels(run, endpoint)
            await check_subscribe_labels(run, endpoint)
        else:
            run.skip("endpoint unreachable", *endpoint_checks[1:])
        await check_declaration(run, document)
    check_value_syntax(run)
    check_own_content(run)
    return run.findings
