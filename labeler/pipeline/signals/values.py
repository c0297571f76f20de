"""A hash given from outside (a bank file, an exchange, the upload API) in the form banks store and matchers read.

One function, so a hash accepted by one door is accepted, and written the same way, by every other: PDQ and the
exact hashes as lowercase hex of their length (surrounding space and case forgiven), vPDQ as python-threatexchange
writes its signal string.
"""

from __future__ import annotations

from labeler.pipeline.signals import PDQ, VPDQ, validate_pdq_hex
from labeler.pipeline.signals.exact import validate_exact
from labeler.pipeline.signals.vpdq import parse_signal, to_signal


def normalised_hash(signal_type: str, value: object) -> str:
    """`value` as a `signal_type` hash is stored, or ValueError saying what is wrong with it."""
    if signal_type == VPDQ:
        return to_signal(parse_signal(value))
    text = value.strip().lower() if isinstance(value, str) else value
    return validate_pdq_hex(text) if signal_type == PDQ else validate_exact(signal_type, text)
