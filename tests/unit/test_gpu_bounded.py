"""agent.gpu.bounded: reads in order on one reader thread, a hung read cut off and not asked again.

Real threads; a "hung" read blocks on an Event the test releases. No timed
assertions: a run that waited on a read it should not have asked would never
return (the bound it has then is an hour) and the test would hang.
"""

from __future__ import annotations

import threading

import pytest

from agent.gpu.bounded import BoundedReader, CallHung, longest_wait_s
from tests.support.waiting import wait_for

HOUR = 3600.0


class Gpus:
    """Reads that record which thread made them; `hang[i]` set: read i blocks until released."""

    def __init__(self, n: int):
        self.calls: list[list[str]] = [[] for _ in range(n)]
        self.hang: dict[int, threading.Event] = {}
        self.value = [f"gpu{i}" for i in range(n)]

    def read(self, i: int):
        def go():
            self.calls[i].append(threading.current_thread().name)
            gate = self.hang.get(i)
            if gate is not None:
                gate.wait()
            return self.value[i]

        return go

    def reads(self):
        return [(i, self.read(i)) for i in range(len(self.calls))]


@pytest.fixture
def released():
    gates: list[threading.Event] = []
    yield gates
    for gate in gates:  # no thread left blocked after the test
        gate.set()


def test_every_read_runs_in_order_on_one_reader_thread_across_runs():
    gpus = Gpus(8)
    reader = BoundedReader("nvml-reader", HOUR)
    try:
        assert reader.run(gpus.reads()) == [f"gpu{i}" for i in range(8)]
        gpus.value = [f"again{i}" for i in range(8)]
        assert reader.run(gpus.reads()) == [f"again{i}" for i in range(8)]
    finally:
        reader.close()
    threads = {name for calls in gpus.calls for name in calls}
    assert threads == {"nvml-reader"} and threading.current_thread().name not in threads
    assert all(len(calls) == 2 for calls in gpus.calls)


def test_a_hang_on_a_middle_gpu_cuts_it_off_and_the_gpus_after_it_are_still_read(released):
    gpus = Gpus(5)
    gate = threading.Event()
    released.append(gate)
    gpus.hang[2] = gate
    reader = BoundedReader("nvml-reader", 0.2)
    try:
        first = reader.run(gpus.reads())
        assert [first[i] for i in (0, 1, 3, 4)] == ["gpu0", "gpu1", "gpu3", "gpu4"]  # before and after it
        assert isinstance(first[2], CallHung) and first[2].call == "an NVML call"  # no NVML call in this fake
        assert reader.stuck() == [2]

        # the next run does not ask GPU 2 again, nor wait on it: with an hour's bound, waiting would hang here
        reader.bound_s = HOUR
        gpus.value[0] = "next0"
        second = reader.run(gpus.reads())
        assert second[0] == "next0" and [second[i] for i in (1, 3, 4)] == ["gpu1", "gpu3", "gpu4"]
        assert isinstance(second[2], CallHung)
        assert len(gpus.calls[2]) == 1 and all(len(gpus.calls[i]) == 2 for i in (0, 1, 3, 4))

        # its call returns: back in the rotation at the next run
        gate.set()
        wait_for(lambda: reader.stuck() == [], what="the hung read to return")
        assert reader.run(gpus.reads()) == ["next0", "gpu1", "gpu2", "gpu3", "gpu4"]
        assert len(gpus.calls[2]) == 2
    finally:
        reader.close()


def test_every_gpu_hanging_at_once_is_each_reported_and_the_run_returns(released):
    # a driver-wide hang: the first read overruns in order, the rest (asked at once) overrun together
    gpus = Gpus(4)
    for i in range(4):
        gate = threading.Event()
        released.append(gate)
        gpus.hang[i] = gate
    reader = BoundedReader("nvml-reader", 0.2)
    try:
        results = reader.run(gpus.reads())
        assert all(isinstance(r, CallHung) for r in results)
        assert sorted(reader.stuck()) == [0, 1, 2, 3]
        assert all(len(calls) == 1 for calls in gpus.calls)  # each asked once, none twice
    finally:
        reader.close()
    assert longest_wait_s(5.0) == 10.0


def test_an_exception_in_a_read_is_raised_once_every_read_was_waited_for():
    gpus = Gpus(3)

    def broken():
        raise RuntimeError("a bug, not an NVML error")

    reader = BoundedReader("nvml-reader", HOUR)
    try:
        with pytest.raises(RuntimeError, match="a bug"):
            reader.run([(0, gpus.read(0)), (1, broken), (2, gpus.read(2))])
        assert len(gpus.calls[2]) == 1  # the read after it was still made
        assert reader.run(gpus.reads()) == ["gpu0", "gpu1", "gpu2"]
    finally:
        reader.close()
