"""The policy runner's handle registry: one open per key, closing on request, when idle, at shutdown."""

import threading

import pytest

from aggregator.policies import PolicyError, PolicyLoadError
from aggregator.policies.errors import PolicyConfigError
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.sidecar_server import HandleRegistry, PolicyKey, error_kind


class RecordingHandle(PolicyHandle):
    mode = "local"
    uri = None

    def __init__(self, source):
        self.label = source
        self.closed = False

    def eval(self, input_data, parameters=None):
        return {}

    def management(self, action, data):
        return {}

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def opened():
    return []


@pytest.fixture
def registry(opened):
    def opener(source, settings, parameters):
        if source == "broken":
            raise PolicyLoadError("broken: cannot load")
        handle = RecordingHandle(source)
        opened.append((source, settings, parameters, handle))
        return handle

    clock = Clock()
    reg = HandleRegistry(opener, clock=clock, idle_close_s=60)
    reg.clock = clock
    return reg


def test_a_key_is_opened_once_and_settings_order_does_not_matter(registry, opened):
    with registry.use(PolicyKey.of("h1", "p", {"a": 1, "b": 2}, {"x": 1})) as first:
        pass
    with registry.use(PolicyKey.of("h1", "p", {"b": 2, "a": 1}, {"x": 1})) as again:
        pass
    with registry.use(PolicyKey.of("h2", "p", {"a": 1, "b": 2}, {"x": 1})) as other:
        pass
    assert first is again and other is not first
    assert [(s, st, pa) for s, st, pa, _ in opened] == [("p", {"a": 1, "b": 2}, {"x": 1})] * 2
    assert len(registry) == 2


def test_a_failed_open_leaves_nothing_and_is_retried(registry):
    for _ in range(2):
        with pytest.raises(PolicyLoadError), registry.use(PolicyKey.of("", "broken", {}, {})):
            pass
    assert len(registry) == 0


def test_close_and_close_all(registry, opened):
    key = PolicyKey.of("h", "p", {}, {})
    with registry.use(key):
        pass
    assert registry.close(key) is True and opened[0][3].closed
    assert registry.close(key) is False
    with registry.use(key) as reopened:
        pass
    assert reopened is not opened[0][3]
    registry.close_all()
    assert reopened.closed and len(registry) == 0


def test_idle_handles_are_closed_but_not_while_in_use(registry, opened):
    busy, idle = PolicyKey.of("busy", "p", {}, {}), PolicyKey.of("idle", "p", {}, {})
    with registry.use(idle) as idle_handle:
        pass
    entered, release = threading.Event(), threading.Event()

    def long_call():
        with registry.use(busy):
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=long_call)
    worker.start()
    entered.wait(10)
    registry.clock.now += 61
    assert registry.close_idle() == 1
    assert idle_handle.closed and not opened[1][3].closed
    release.set()
    worker.join(10)
    registry.clock.now += 30
    assert registry.close_idle() == 0  # its idle time counts from the end of the call
    registry.clock.now += 31
    assert registry.close_idle() == 1


@pytest.mark.parametrize("error, kind", [
    (PolicyLoadError("x"), "load"), (PolicyConfigError("x"), "config"), (PolicyError("x"), "run")])
def test_error_kinds(error, kind):
    assert error_kind(error) == kind
