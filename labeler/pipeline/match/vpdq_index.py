"""Banked videos by vPDQ: every distinct frame hash of every banked video in a `PdqIndex`, compared with pytx's
semantics (`signals.vpdq`).

A query looks up each of its frames (quality-filtered, distinct) in the frame index within the frame distance,
then groups the hits by banked video: which query frames found that video, which of its frames were found, and
the nearest distance of each. `signals.vpdq.similarity` turns that into pytx's two percentages and a match. A
frame shared by several banked videos is one row per video, so each video's share is counted on its own (the
flaw pytx's index README describes for a single FAISS row is avoided by construction).

Rows are keyed `(bank, "<entry id>#<frame number>")` in the frame index; entries are added and removed whole.
Lookups are CPU work (one `PdqIndex` probe per query frame): callers run them in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labeler.pipeline.match.base import Match, sort_matches
from labeler.pipeline.match.index import PdqIndex
from labeler.pipeline.signals import VPDQ
from labeler.pipeline.signals.vpdq import Thresholds, VpdqFeature, prepared, similarity

VideoRow = tuple[Sequence[VpdqFeature], str, str, str | None, str | None]  # features, bank, entry, ext id, note


@dataclass(frozen=True, slots=True)
class _Entry:
    frames: tuple[str, ...]  # prepared frame hashes
    external_id: str | None
    note: str | None


class VpdqIndex:
    """Banked videos; `query` returns those a video matches, with their similarity."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.frames = PdqIndex()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()  # writers; lookups read `_entries` entries that are never mutated

    def __len__(self) -> int:
        return len(self._entries)

    def add_many(self, rows: Iterable[VideoRow]) -> int:
        """Add `(features, bank, entry_id, external_id, note)` rows; a (bank, entry_id) present is replaced.
        A video none of whose frames reaches the quality threshold cannot match anything and is not added."""
        added = 0
        for features, bank, entry_id, external_id, note in rows:
            frames = prepared(features, self.thresholds.quality)
            with self._lock:
                self._remove((bank, entry_id))
                if not frames:
                    continue
                self.frames.add_many((h, bank, f"{entry_id}#{k}") for k, h in enumerate(frames))
                self._entries[(bank, entry_id)] = _Entry(frames, external_id, note)
                added += 1
        return added

    def remove(self, bank: str, entry_id: str) -> bool:
        with self._lock:
            return self._remove((bank, entry_id))

    def remove_bank(self, bank: str) -> int:
        with self._lock:
            doomed = [key for key in self._entries if key[0] == bank]
            for key in doomed:
                del self._entries[key]
            self.frames.remove_bank(bank)
            return len(doomed)

    def compact(self) -> None:
        if self.frames.needs_compaction:
            self.frames.compact()

    def query(self, features: Sequence[VpdqFeature]) -> list[Match]:
        """Banked videos that `features` match by pytx's rule, nearest first, each with its `similarity` (the
        match's `distance` is the frame distance at which the thresholds still hold). Thread-safe."""
        t = self.thresholds
        frames = prepared(features, t.quality)
        query_best: dict[tuple[str, str], dict[str, int]] = {}  # video → query frame → nearest distance
        compared_best: dict[tuple[str, str], dict[str, int]] = {}  # video → its frame number → nearest distance
        for frame in frames:
            for hit in self.frames.query(frame, t.frame_distance):
                entry_id, _, number = hit.entry_id.rpartition("#")
                key = (hit.bank, entry_id)
                mine, theirs = query_best.setdefault(key, {}), compared_best.setdefault(key, {})
                mine[frame] = min(mine.get(frame, hit.distance), hit.distance)
                theirs[number] = min(theirs.get(number, hit.distance), hit.distance)
        found = []
        for key, mine in query_best.items():
            entry = self._entries.get(key)
            if entry is None:  # removed meanwhile
                continue
            similar = similarity(mine, compared_best[key], len(frames), len(entry.frames), t)
            if similar is not None:
                found.append(Match(key[0], key[1], similar.distance, entry.external_id, entry.note, VPDQ, similar))
        return sort_matches(found)

    def _remove(self, key: tuple[str, str]) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        for k in range(len(entry.frames)):
            self.frames.remove(key[0], f"{key[1]}#{k}")
        return True
