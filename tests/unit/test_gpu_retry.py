"""RetryingGpuCollector: NVML retried on an interval; XID event listeners reach the live collector."""

from agent.gpu.collector import NullGpuCollector, RetryingGpuCollector
from agent.gpu.nvml_backend import NvmlUnavailable


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
    collector.start()
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


def test_nothing_is_opened_before_start_and_the_live_collector_is_started():
    live = _Live()
    opener = Opener([], then=live)
    collector = RetryingGpuCollector(opener, clock=Clock(), retry_interval_s=60.0)
    assert opener.calls == 0 and collector.inventory().nvml_status == "not started"
    collector.start()
    assert opener.calls == 1 and live.started and collector.inventory().nvml_status == "ok"


def test_no_gpus_is_retried_too():
    clock = Clock()
    opener = Opener([], then=NullGpuCollector("no GPUs", "550.54.15", "12.4"))
    collector = RetryingGpuCollector(opener, clock=clock, retry_interval_s=10.0)
    collector.start()
    report = collector.inventory()
    assert (report.nvml_status, report.driver_version, report.gpus) == ("no GPUs", "550.54.15", ())
    clock.now += 10.0
    collector.inventory()
    assert opener.calls == 2


def test_close_closes_the_live_collector_and_reports_closed():
    live = _Live()
    collector = RetryingGpuCollector(Opener([], then=live), clock=Clock(), retry_interval_s=10.0)
    collector.start()
    collector.close()
    assert live.closed
    assert collector.inventory().nvml_status == "closed"
    assert collector.sample() == ((), ())


class _Live:
    name = "gpu"

    def __init__(self):
        self.closed = False
        self.started = False
        self.listener = None

    def inventory(self):
        from agent.sampling.collector import GpuReport

        return GpuReport((), "550.54.15", "12.4", "ok")

    def sample(self):
        return (), ()

    def start(self):
        self.started = True

    def set_event_listener(self, listener):
        self.listener = listener

    def close(self):
        self.closed = True


def test_an_event_listener_set_before_nvml_comes_up_reaches_the_live_collector():
    clock = Clock()
    live = _Live()
    collector = RetryingGpuCollector(Opener(["driver not loaded"], then=live), clock=clock, retry_interval_s=60.0)
    collector.start()
    heard = []
    collector.set_event_listener(heard.append)  # the null collector ignores it meanwhile
    clock.now += 60.0
    collector.sample()
    assert live.listener == heard.append
    collector.set_event_listener(None)
    assert live.listener is None


def test_an_event_listener_given_when_opening_reaches_the_live_collector():
    live = _Live()
    RetryingGpuCollector(Opener([], then=live), clock=Clock(), retry_interval_s=60.0, on_event=print).start()
    assert live.listener is print


class _NoGpuSession:
    """Just enough of an NVML session for a collector with no devices (no event thread)."""

    def driver_version(self):
        return "550.54.15"

    def cuda_driver_version(self):
        return "12.4"

    def device_count(self):
        return 0

    def close(self):
        pass


def _xid():
    from proto.telemetry.v1.readings import HealthEvent

    return HealthEvent(kind="xid", timestamp=1.0, gpu_index=0, gpu_uuid="GPU-a", xid=79)


def test_an_event_goes_to_the_listener_or_with_the_next_sample_never_both():
    from agent.gpu.collector import NvmlGpuCollector

    heard = []
    collector = NvmlGpuCollector(_NoGpuSession(), on_event=heard.append)
    collector._deliver(_xid())  # what the event thread does with each NVML event
    assert heard == [_xid()] and collector.sample() == ((), ())

    def broken(event):
        raise RuntimeError("stream closed")

    collector.set_event_listener(broken)
    collector._deliver(_xid())  # a failing listener must not lose it
    assert collector.sample() == ((), (_xid(),))
    collector.set_event_listener(None)
    collector._deliver(_xid())
    assert collector.sample() == ((), (_xid(),))
