"""RetryingGpuCollector: NVML that cannot start is retried on an interval, not on every call."""

from agent.collectors.gpu import NullGpuCollector, RetryingGpuCollector
from agent.nvml_backend import NvmlUnavailable


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Opener:
    """Fails with the given statuses, then returns `then`."""

    def __init__(self, failures, then):
        self.failures = list(failures)
        self.then = then
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise NvmlUnavailable(9, "NVML_ERROR_DRIVER_NOT_LOADED", self.failures.pop(0))
        return self.then


def test_retries_only_after_the_interval_and_then_stays_live():
    clock = Clock()
    live_opener = Opener(["driver not loaded", "driver not loaded"], then=_Live())
    collector = RetryingGpuCollector(live_opener, clock=clock, retry_interval_s=60.0)
    assert live_opener.calls == 1
    assert collector.inventory().nvml_status == "driver not loaded"
    clock.now += 59.0
    collector.sample()
    collector.inventory()
    assert live_opener.calls == 1  # not before the interval
    clock.now += 1.0
    assert collector.inventory().nvml_status == "driver not loaded"
    assert live_opener.calls == 2
    clock.now += 60.0
    assert collector.inventory().nvml_status == "ok"
    assert live_opener.calls == 3
    clock.now += 600.0
    collector.sample()
    assert live_opener.calls == 3  # live: no more opening


def test_no_gpus_is_retried_too():
    clock = Clock()
    opener = Opener([], then=NullGpuCollector("no GPUs", "550.54.15", "12.4"))
    collector = RetryingGpuCollector(opener, clock=clock, retry_interval_s=10.0)
    report = collector.inventory()
    assert (report.nvml_status, report.driver_version, report.gpus) == ("no GPUs", "550.54.15", ())
    clock.now += 10.0
    collector.inventory()
    assert opener.calls == 2


def test_close_closes_the_live_collector_and_reports_closed():
    live = _Live()
    collector = RetryingGpuCollector(Opener([], then=live), clock=Clock(), retry_interval_s=10.0)
    collector.close()
    assert live.closed
    assert collector.inventory().nvml_status == "closed"
    assert collector.sample() == ((), ())


class _Live:
    name = "gpu"

    def __init__(self):
        self.closed = False

    def inventory(self):
        from agent.collectors.base import GpuReport

        return GpuReport((), "550.54.15", "12.4", "ok")

    def sample(self):
        return (), ()

    def close(self):
        self.closed = True
