"""The threads that share out a live commit's socket writes (`labeler.labels.fanout`), on real threads and sockets."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from labeler.labels.fanout import PARALLEL_MIN, FanOutThreads


@pytest.fixture
def three() -> Iterator[FanOutThreads]:
    threads = FanOutThreads(3)
    try:
        yield threads
    finally:
        threads.close()


def test_results_come_back_in_order_from_one_share_per_thread(three: FanOutThreads) -> None:
    ran_on: dict[int, int] = {}

    def record(item: int) -> int:
        ran_on[item] = threading.get_ident()
        time.sleep(0.0002)  # a share lasts long enough that the pool does not hand two to one idle helper
        return item * 2

    items = list(range(PARALLEL_MIN * 3 + 1))
    assert three.map(record, items) == [item * 2 for item in items]
    assert len(set(ran_on.values())) == 3
    assert ran_on[0] == threading.get_ident(), "the caller writes the first share itself"
    shares = [ran_on[item] for item in items]
    assert shares == sorted(shares, key=shares.index), "each thread takes one consecutive share"


def test_a_few_items_stay_on_the_calling_thread(three: FanOutThreads) -> None:
    ran_on = set()
    three.map(lambda item: ran_on.add(threading.get_ident()), range(PARALLEL_MIN - 1))
    assert ran_on == {threading.get_ident()}


def test_a_failing_share_returns_only_after_the_helpers_are_done(three: FanOutThreads) -> None:
    """The event loop must not run while a helper still writes to one of its sockets, even when the loop's own
    share fails."""
    release = threading.Event()
    finished: list[int] = []

    def work(item: int) -> int:
        if item == 0:
            release.set()
            raise RuntimeError("the caller's share failed")
        release.wait()
        time.sleep(0.001)  # long enough that a map() which did not wait would return first
        finished.append(item)
        return item

    items = list(range(PARALLEL_MIN * 3))
    with pytest.raises(RuntimeError):
        three.map(work, items)
    assert sorted(finished) == items[PARALLEL_MIN:], "every helper item was done before map() returned"


def test_one_thread_writes_everything_itself() -> None:
    single = FanOutThreads(1)
    ran_on = set()
    single.map(lambda item: ran_on.add(threading.get_ident()), range(PARALLEL_MIN * 4))
    single.close()
    assert ran_on == {threading.get_ident()}


def test_after_close_everything_runs_on_the_calling_thread() -> None:
    threads = FanOutThreads(3)
    threads.close()
    ran_on = set()
    assert (
        threads.map(lambda item: ran_on.add(threading.get_ident()) or item, range(PARALLEL_MIN * 3))[-1]
        == PARALLEL_MIN * 3 - 1
    )
    assert ran_on == {threading.get_ident()}


def test_socket_writes_from_every_thread_arrive_whole(three: FanOutThreads) -> None:
    pairs = [socket.socketpair() for _ in range(PARALLEL_MIN * 2)]
    try:
        for ours, _theirs in pairs:
            ours.setblocking(False)
        wire = os.urandom(300)
        assert three.write(wire, [ours.fileno() for ours, _theirs in pairs]) == [len(wire)] * len(pairs)
        assert all(theirs.recv(1000) == wire for _ours, theirs in pairs)
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_write_reports_what_each_socket_took(three: FanOutThreads) -> None:
    """A socket with room for only part of the bytes reports how many it took, a full one -1, a closed fd -1:
    never an exception, so one bad socket cannot stop the others' writes."""
    pairs = [socket.socketpair() for _ in range(PARALLEL_MIN * 3)]
    full, closed = pairs[-1][0], pairs[PARALLEL_MIN][0]
    try:
        for ours, _theirs in pairs:
            ours.setblocking(False)
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        wire = os.urandom(64 * 1024)
        while True:  # fill `full` to the brim
            try:
                full.send(wire)
            except BlockingIOError:
                break
        fds = [ours.fileno() for ours, _theirs in pairs]
        closed_fd = closed.detach()
        os.close(closed_fd)
        taken = three.write(wire, fds)
        assert taken[-1] == -1, "a full socket takes nothing"
        assert taken[PARALLEL_MIN] == -1, "a closed fd fails without raising"
        assert 0 < taken[0] < len(wire), "a small buffer takes part"
        assert pairs[0][1].recv(len(wire)) == wire[: taken[0]]
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
