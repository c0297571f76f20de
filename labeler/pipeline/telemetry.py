"""The pipeline's Prometheus metrics, registered on the Labeler's own registry (`Metrics.registry`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "labeler_pipeline_jobs", "Image jobs not done: queued, running, and due (queued whose time has come)",
            ["status"], registry=registry,
        )  # fmt: skip
        self.oldest_due_age = Gauge(
            "labeler_pipeline_oldest_due_job_age_seconds", "How long the oldest due job has waited for a worker",
            registry=registry,
        )  # fmt: skip
        self.outcomes = Counter(
            "labeler_pipeline_job_outcomes", "Finished image jobs by outcome and reason", ["outcome", "reason"],
            registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "labeler_pipeline_job_retries", "Jobs put back with backoff, by cause", ["cause"], registry=registry
        )
        self.fetch_errors = Counter(
            "labeler_pipeline_fetch_errors", "Blob fetch failures by reason", ["reason"], registry=registry
        )
        self.matcher_seconds = Histogram(
            "labeler_pipeline_matcher_seconds", "Matcher lookup latency (all variants of one image)", ["matcher"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )  # fmt: skip
        self.matcher_errors = Counter(
            "labeler_pipeline_matcher_errors", "Matcher failures by kind", ["matcher", "kind"], registry=registry
        )
        self.hash_seconds = Histogram(
            "labeler_pipeline_hash_seconds",
            "Decode + perceptual hash time per blob (process pool round trip): PDQ for images, vPDQ for videos",
            ["media"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )  # fmt: skip
        self.labels = Counter("labeler_pipeline_decisions", "Policy decisions by action", ["action"], registry=registry)
        self.matches = Counter(
            "labeler_pipeline_matches", "Bank entries matched by finished jobs, by signal type", ["signal_type"],
            registry=registry,
        )  # fmt: skip
