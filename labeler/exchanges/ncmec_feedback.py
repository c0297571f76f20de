"""NCMEC feedback: an upvote (the entry's hash did match what it says) or a downvote (it did not) on one fingerprint
of one entry, as pytx's `NCMECHashAPI.submit_feedback` sends it.

The wire format: PUT `<environment>/v2/entries/<member>/<entry>/<FINGERPRINT>/feedback` with a
`feedbackSubmission` XML body holding `affirmative`, or `negative` with the GUID of a reason in
`reasonIds/guid`. The reasons NCMEC accepts are listed per fingerprint type at GET
`<environment>/v2/feedback/<FINGERPRINT>/reasons` (`availableFeedbackReasons`, each with a `guid` and a `name`).
As in pytx, a downvote takes the only reason when there is one; where there are several, the exchange's
`feedback_reason` option names the one to give (`labeler exchange feedback NAME on --reason …`), and without it
the downvote is refused for good with the choices in its message. A member's later vote on a fingerprint replaces
its earlier one, so a reversed confirmation is simply a downvote. NCMEC takes no free text: the moderator's note
stays here.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from typing import Final

from threatexchange.exchanges.clients.ncmec import hash_api

from labeler.exchanges.errors import ExchangeError, ExchangeUnavailable, MalformedPage
from labeler.exchanges.ncmec import NcmecClient, read_xml
from labeler.exchanges.store import FEEDBACK_REASON
from labeler.exchanges.types import FeedbackCall

NS: Final = "https://hashsharing.ncmec.org/hashsharing/v2"
_FINGERPRINTS: Final = {"pdq": hash_api.FingerprintType.pdq, "md5": hash_api.FingerprintType.md5}  # ours → NCMEC's


async def send_vote(client: NcmecClient, call: FeedbackCall) -> None:
    """Upvote (confirmed) or downvote (rejected) the fingerprint of `call`'s entry."""
    member, entry = _entry_of(call.remote_id)
    fingerprint = _FINGERPRINTS.get(call.signal_type)
    if fingerprint is None:
        raise ExchangeError(f"NCMEC takes no feedback on {call.signal_type} hashes")
    root = ET.Element("feedbackSubmission", xmlns=NS)
    vote = ET.SubElement(root, "affirmative" if call.confirmed else "negative")
    if not call.confirmed:
        reason = _chosen(await reasons(client, fingerprint), call.options.get(FEEDBACK_REASON), fingerprint)
        ET.SubElement(ET.SubElement(vote, "reasonIds"), "guid").text = reason
    path = f"/v2/entries/{member}/{urllib.parse.quote(entry, safe='')}/{fingerprint.value}/feedback"
    await client.put(client.base_url + path, ET.tostring(root))


async def reasons(client: NcmecClient, fingerprint: hash_api.FingerprintType) -> dict[str, str]:
    """The downvote reasons NCMEC accepts for `fingerprint`: GUID → name."""
    body = await client.get(f"{client.base_url}/v2/feedback/{fingerprint.value}/reasons")
    try:
        listed = hash_api._XMLWrapper(read_xml(body))["availableFeedbackReasons"]
        return {reason.str("guid"): reason.str("name") for reason in listed}
    except (MalformedPage, IndexError, ValueError, AssertionError) as exc:
        why = type(exc).__name__
        raise ExchangeUnavailable(f"NCMEC's feedback reasons are unreadable ({why}); will retry") from None


def _chosen(offered: dict[str, str], wanted: object, fingerprint: hash_api.FingerprintType) -> str:
    """The GUID of the reason to give: the configured one (by GUID or name), else the only one offered."""
    if not offered:
        raise ExchangeError(f"NCMEC offers no downvote reasons for {fingerprint.value}; ask NCMEC")
    if isinstance(wanted, str) and wanted:
        for guid, name in offered.items():
            if wanted in (guid, name) or wanted.casefold() == name.casefold():
                return guid
    elif len(offered) == 1:
        return next(iter(offered))
    choices = ", ".join(repr(name) for name in sorted(offered.values()))
    given = f"the configured reason {wanted!r} is not one of them" if wanted else "none is chosen"
    raise ExchangeError(
        f"NCMEC takes a downvote of {fingerprint.value} with one of these reasons: {choices}; {given} "
        "(`labeler exchange feedback NAME on --reason …`, then `labeler actions retry --failed`)"
    )


def _entry_of(remote_id: str) -> tuple[int, str]:
    """The member and entry ids of an entry id here (`ncmec.remote_id`)."""
    member, _, entry = remote_id.partition("-")
    if not member.isdigit() or not entry:
        raise ExchangeError(f"{remote_id!r} is not an NCMEC entry id (<member>-<entry>); fetch the exchange again")
    return int(member), entry
