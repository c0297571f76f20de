"""The stream sources' figures on `/metrics`, read from their stats at scrape time.

Lag is event time against now: a firehose frame's `time` (when the relay sequenced it) or Jetstream's `time_us`.
Neither protocol tells a consumer the server's head, so "events behind" cannot be read off the stream; the
cursor is exported so it can be compared with the relay's own figures, and an `#info OutdatedCursor` (the
server no longer had our position: events were skipped) is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from labeler.pipeline.sources.base import StreamSource

_LABELS = ["source", "kind"]


class SourceCollector(Collector):
    def __init__(self, sources: Callable[[], Iterable[StreamSource]], clock: Callable[[], float] = time.time) -> None:
        self._sources = sources
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        lag = GaugeMetricFamily(
            "labeler_source_lag_seconds", "Now minus the time of the newest event read (relay or Jetstream time)",
            labels=_LABELS,
        )  # fmt: skip
        cursor = GaugeMetricFamily("labeler_source_cursor", "Position of the newest event read", labels=_LABELS)
        saved = GaugeMetricFamily(
            "labeler_source_saved_cursor", "Position saved with every job before it committed", labels=_LABELS
        )
        events = CounterMetricFamily("labeler_source_events", "Events read", labels=_LABELS)
        jobs = CounterMetricFamily("labeler_source_jobs", "Jobs made from events", labels=_LABELS)
        connects = CounterMetricFamily("labeler_source_connects", "Connection attempts", labels=_LABELS)
        errors = CounterMetricFamily("labeler_source_errors", "Failed connections and saves", labels=_LABELS)
        paused = GaugeMetricFamily(
            "labeler_source_backpressure", "1 while the source is paused because the job queue is full", labels=_LABELS
        )
        pauses = CounterMetricFamily("labeler_source_backpressure_pauses", "Backpressure pauses", labels=_LABELS)
        paused_seconds = CounterMetricFamily(
            "labeler_source_backpressure_seconds", "Time paused by backpressure", labels=_LABELS
        )
        outdated = CounterMetricFamily(
            "labeler_source_outdated_cursor", "Times the server no longer held our cursor (events skipped)",
            labels=_LABELS,
        )  # fmt: skip
        now = self._clock()
        for source in self._sources():
            key = [source.name, source.kind]
            stats = source.stats
            if stats.event_time is not None:
                lag.add_metric(key, max(0.0, now - stats.event_time))
            for family, value in ((cursor, source.cursor), (saved, stats.saved_cursor)):
                if value is not None and value.isdigit():
                    family.add_metric(key, float(value))
            events.add_metric(key, stats.events)
            jobs.add_metric(key, stats.jobs)
            connects.add_metric(key, stats.connects)
            errors.add_metric(key, stats.errors)
            outdated.add_metric(key, stats.outdated_cursor)
            paused.add_metric(key, 1.0 if stats.paused_since is not None else 0.0)
            pauses.add_metric(key, stats.pauses)
            paused_seconds.add_metric(key, stats.paused_for())
        yield from (lag, cursor, saved, events, jobs, connects, errors, outdated, paused, pauses, paused_seconds)
