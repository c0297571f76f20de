"""Prometheus metrics for one Labeler, on its own registry (so several Labelers in one process never clash).

Counters are incremented by the parts as things happen; gauges about the stream are read at scrape time.
Other parts (the pipeline) register their own metrics on `Metrics.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from labeler.labels.hub import StreamHub
from labeler.store.labels import CommitResult


class _StreamCollector(Collector):
    def __init__(self, hub: Callable[[], StreamHub | None]) -> None:
        self._hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        hub = self._hub()
        if hub is None:
            return
        subs = list(hub.subscribers)
        yield GaugeMetricFamily("labeler_stream_head_seq", "Last seq fanned out to live subscribers", hub.head)
        yield GaugeMetricFamily("labeler_stream_subscribers", "Connected subscribeLabels clients", len(subs))
        lag = max((len(s.frames) for s in subs), default=0)
        yield GaugeMetricFamily(
            "labeler_stream_subscriber_lag_frames_max", "Frames buffered for the slowest live subscriber", lag
        )
        yield GaugeMetricFamily(
            "labeler_stream_subscriber_buffered_frames", "Frames buffered across all subscribers",
            sum(len(s.frames) for s in subs),
        )  # fmt: skip


class Metrics:
    def __init__(self, hub: Callable[[], StreamHub | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels_emitted = Counter(
            "labeler_labels_emitted", "Labels committed, by kind", ["kind"], registry=self.registry
        )
        self.label_commits = Counter("labeler_label_commits", "Label transactions committed", registry=self.registry)
        self.commit_batch = Histogram(
            "labeler_label_commit_batch_size", "Labels per committed transaction (group commit)",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 2000), registry=self.registry,
        )  # fmt: skip
        self.stream_too_slow = Counter(
            "labeler_stream_consumer_too_slow", "Subscribers cut off with ConsumerTooSlow", registry=self.registry
        )
        self.registry.register(_StreamCollector(hub))

    def on_commit(self, result: CommitResult) -> None:
        self.label_commits.inc()
        self.commit_batch.observe(len(result.stored))
        negations = sum(1 for s in result.stored if s.label.neg)
        if negations:
            self.labels_emitted.labels(kind="negation").inc(negations)
        if len(result.stored) > negations:
            self.labels_emitted.labels(kind="label").inc(len(result.stored) - negations)

    def render(self) -> bytes:
        return generate_latest(self.registry)
