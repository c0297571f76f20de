"""The Actioner's Prometheus metrics, on the Labeler's registry (`Metrics.registry`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ActionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "labeler_actions", "Actions finished, by kind, op (apply/reverse) and state (done/skipped/failed)",
            ["kind", "op", "state"], registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "labeler_action_retries", "Action attempts that failed and will be tried again, by kind and cause",
            ["kind", "cause"], registry=registry,
        )  # fmt: skip
        self.queued = Gauge(
            "labeler_actions_queued", "Actions in the outbox by kind and state (refreshed by running workers)",
            ["kind", "state"], registry=registry,
        )  # fmt: skip
        self.suppressed = Counter(
            "labeler_matches_suppressed", "Matches not acted on: allow-listed image, disabled bank entry",
            ["reason"], registry=registry,
        )  # fmt: skip
        self.review_only = Counter(
            "labeler_entries_review_only", "Bank entries switched to review-only by flood control", ["bank"],
            registry=registry,
        )  # fmt: skip
        self.altitude_polls = Counter(
            "labeler_altitude_polls", "Altitude cases read back, by outcome (confirmed, rejected, open, unavailable, "
            "gone, decided-here)", ["outcome"], registry=registry,
        )  # fmt: skip
