"""From a decision's evidence to the rows that carry it out: targets of takedowns and reports, one intent per key."""

from __future__ import annotations

from typing import Any

from labeler.pipeline.actions.plan import Intent, decision_key, evidence_rule, plan
from labeler.pipeline.policy import Rule

AUTHOR = "did:plc:authorauthorauthorauthora"
POST = f"at://{AUTHOR}/app.bsky.feed.post/3k"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
BLOB = "bafkreib3xxmfcbrwwchsfe3xq5mhn5pmeyqkklf3d5tpiszptavrjkkbi4"
PIPELINE = Intent("pipeline", "pipeline", "match", respect_negations=True)


def evidence(rule: Rule) -> dict[str, Any]:
    return {
        "job_id": 7, "subject": {"uri": POST, "cid": CID}, "image": {"did": AUTHOR, "blob_cid": BLOB},
        "signal_type": "pdq", "pdq": "ab" * 32,
        "match": {"bank": "NCMEC", "entry_id": "12", "external_id": "case-3", "distance": 4},
        "rule": rule.to_json(),
    }  # fmt: skip


def test_a_record_takedown_is_the_post_and_its_blob_and_a_report_names_the_evidence() -> None:
    rule = Rule("r", ("NCMEC",), ("!hide",), takedown_distance=10, report_distance=10)
    kinds = ("review", "takedown", "report")
    specs = plan(evidence(rule), rule, kinds, key="job:7:r", subject_uri=POST, subject_cid=CID, intent=PIPELINE)
    _, record, blob, report = specs
    assert [s.dedupe_key for s in specs] == [
        "job:7:r|review|", "job:7:r|takedown|record", "job:7:r|takedown|blob", "job:7:r|report|",
    ]  # fmt: skip
    assert record.params["subject"] == {"$type": "com.atproto.repo.strongRef", "uri": POST, "cid": CID}
    assert blob.params["subject"] == {"$type": "com.atproto.admin.defs#repoBlobRef", "did": AUTHOR, "cid": BLOB}
    assert report.params["subject"] == record.params["subject"]
    reason = report.params["reason"]
    assert "bank NCMEC entry 12 (case-3)" in reason and "pdq distance 4" in reason and BLOB in reason
    assert all(s.subject_uri == POST and s.evidence and s.evidence["action"] == s.kind for s in specs)
    assert decision_key(evidence(rule)) == "job:7:r" and not any(s.notify for s in specs)


def test_evidence_without_a_rule_gives_a_label_only_rule_and_no_decision_key() -> None:
    by_hand = {"bank": "B"}  # a review item not made by the pipeline
    assert decision_key(by_hand) is None
    rule = evidence_rule(by_hand, ["spam"])
    assert (rule.labels, rule.confirmed_kinds()) == (("spam",), ("label",))


def test_account_rules_take_down_and_report_the_account() -> None:
    rule = Rule("a", ("*",), ("!hide",), subject="account", takedown_distance=10, takedown_subject="account",
                report_distance=10)  # fmt: skip
    kinds = ("takedown", "report", "webhook")
    [takedown, report] = plan(
        evidence(rule), rule, kinds, key="job:7:a", subject_uri=AUTHOR, subject_cid=None, intent=PIPELINE
    )
    assert takedown.params["subject"] == {"$type": "com.atproto.admin.defs#repoRef", "did": AUTHOR}
    assert report.params["subject"] == {"$type": "com.atproto.admin.defs#repoRef", "did": AUTHOR}
    assert takedown.notify and report.notify  # "webhook" marks the others for notification
