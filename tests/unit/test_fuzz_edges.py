"""Property-based fuzzing of the edges (issue 13): wire checks, the JSON body parser, the cluster patch.

Each property is bounded (fixed `max_examples`, `derandomize=True`, no
example database), so CI runs the same examples every time in a few seconds.
What every property says: bad input is refused with the edge's own error,
never anything else, and whatever is accepted can be stored and read back.
(Archive extraction is fuzzed in test_policy_archive.py, the HTTP API
against its OpenAPI document in tests/integration/test_openapi_fuzz.py.)
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import strict_json
from aggregator.cluster.patch import ClusterPatchError, InvalidClusterDocument, apply_set, cluster_document_problems
from aggregator.db import Database
from aggregator.telemetry import wire_checks
from aggregator.telemetry.registry import NodeRegistry
from aggregator.telemetry.store import NodeStore
from aggregator.web.json_body import BodyError, parse_json_body
from proto.telemetry.v1 import convert
from proto.telemetry.v1 import telemetry_pb2 as pb
from proto.telemetry.v1.readings import HEALTH_KINDS
from tests.support.telemetry import inventory

BOUNDED = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------- JSON values, tame and hostile

_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -0.0, 5e-324])
_ints = st.integers(-(10**50), 10**50) | st.integers(-(2**64), 2**64)
_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12)
_scalars = st.none() | st.booleans() | _ints | _floats | _text
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=25,
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# ---------------------------------------------------------------- the JSON body parser


@BOUNDED
@given(value=st.dictionaries(_text, json_values, max_size=4), ensure_ascii=st.booleans(), trailing=st.booleans())
def test_a_body_is_parsed_strictly_or_refused_with_a_body_error(value, ensure_ascii, trailing):
    try:
        text = json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True)
    except (ValueError, RecursionError):
        return
    if trailing and text.endswith("}") and len(text) > 2:
        text = text[:-1] + ", }"
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")  # invalid UTF-8 on purpose
    try:
        parsed = parse_json_body(raw)
    except BodyError:
        return
    assert isinstance(parsed, dict)
    assert strict_json.loads(strict_json.dumps(parsed)) == parsed  # what is accepted can be stored and read back


@BOUNDED
@given(junk=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_refused_with_a_body_error_only(junk):
    try:
        parse_json_body(junk)
    except BodyError:
        pass


@pytest.mark.parametrize("depth", [65, 400, 100_000])
def test_nesting_past_the_limit_is_refused_naming_where(depth):
    with pytest.raises(BodyError, match=r"request body \$\.a(\[0\])+: nested deeper than 64 levels"):
        parse_json_body(('{"a": ' + _deep(depth) + "}").encode())
    assert parse_json_body(('{"a": ' + _deep(63) + "}").encode())  # 64 levels with the outer object


@BOUNDED
@given(value=json_values)
def test_strict_dumps_refuses_exactly_what_strict_loads_cannot_give_back(value):
    try:
        text = strict_json.dumps(value)
    except strict_json.StrictJsonError as exc:
        assert exc.path.startswith("$")
        return
    again = strict_json.loads(text)
    assert strict_json.dumps(again) == text


# ---------------------------------------------------------------- the cluster patch

_segment = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=0, max_size=6)
_paths = st.lists(_segment, min_size=1, max_size=40).map(".".join)
BASE = {"id": "c1", "regionId": "r", "config": {}, "nodes": {"count": 0}, "clusterMetadata": {"a": [1]}, "tags": []}


@BOUNDED
@given(changes=st.dictionaries(_paths, json_values, max_size=5))
def test_a_patch_is_applied_whole_or_refused_with_a_patch_error(changes):
    try:
        document = apply_set(BASE, changes)
    except ClusterPatchError:
        return
    assert BASE["clusterMetadata"] == {"a": [1]}  # the input is never modified
    if cluster_document_problems(document):
        return  # the updater turns these into InvalidClusterDocument
    try:
        strict_json.dumps(document)
    except strict_json.StrictJsonError:
        # only the values' own content (NaN, a lone surrogate, digits) can get here: the HTTP parser refuses those
        assert any(strict_json_problem(v) for v in changes.values()) or any(strict_json_problem(k) for k in changes)
    else:
        assert strict_json.depth_of(document) <= strict_json.MAX_DEPTH
    assert InvalidClusterDocument  # (kept importable for the updater's contract)


def strict_json_problem(value) -> bool:
    try:
        strict_json.dumps(value)
    except strict_json.StrictJsonError:
        return True
    return False


# ---------------------------------------------------------------- the wire checks, then the store


# the values where integer ranges break (int32/uint32/int64/uint64 edges), and some ordinary ones
EDGES = (0, 1, 7, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1)


def _u64():
    return st.sampled_from(EDGES) | st.integers(0, 2**64 - 1)


_doubles = st.floats(allow_nan=True, allow_infinity=True, width=64)
_edge_doubles = st.sampled_from([1.8e9, 1.8e9 + 1e6, 0.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]) | _doubles


@st.composite
def agent_messages(draw):
    """One message as an agent could send it; the tests add the seq steps up and run the checks."""
    kind = draw(st.sampled_from(["sample", "health", "health", "inventory"]))
    step = draw(st.sampled_from([1, 1, 1, 2, 2**62, 2**63, 2**64 - 2]))  # from the previous message's seq
    msg = pb.AgentMessage(seq=step, dropped_samples=draw(st.sampled_from([0, 0, 0, 3, *EDGES])))
    if kind == "sample":
        msg.sample.timestamp = draw(st.sampled_from([1.8e9, 1.8e9, 1.9e9]) | _edge_doubles)
        for index in draw(st.lists(st.integers(0, 3), max_size=3, unique=True)):
            gpu = msg.sample.gpus.add(index=index)
            gpu.power_draw_w = draw(st.sampled_from([100.0, 250.5]) | _edge_doubles)
            gpu.ecc_uncorrected_volatile = draw(_u64())
            gpu.lost = draw(st.booleans())
        msg.sample.host.cpu_percent = draw(st.sampled_from([10.0]) | _edge_doubles)
    elif kind == "health":
        msg.health.kind = draw(st.sampled_from(HEALTH_KINDS))
        msg.health.timestamp = draw(st.sampled_from([1.8e9, 1.8e9, 1.8e9 + 1e7]) | _edge_doubles)
        if draw(st.integers(0, 3)) == 0:
            msg.health.gpu_index = draw(st.sampled_from([0, 1, 2**32 - 1]))
        msg.health.xid = draw(_u64())
        msg.health.message = draw(st.sampled_from(["bus error", ""]) | st.text(max_size=20))
    else:
        msg.inventory.CopyFrom(convert.inventory_to_pb(inventory("fuzz")))
        msg.inventory.host.hostname = draw(st.sampled_from(["fuzz"]) | st.text(max_size=20))
        msg.inventory.host.memory_total_mb = draw(_u64())
    return msg


def _hellos():
    return st.builds(
        lambda node_id, instance, interval: pb.Hello(
            node_id=node_id, agent_instance=instance, interval_s=interval,
            inventory=convert.inventory_to_pb(inventory("fuzz"))),
        st.text(max_size=20), st.text(max_size=10), _doubles,
    )


@BOUNDED
@given(hello=_hellos())
def test_any_hello_is_judged_without_an_exception(hello):
    reason = wire_checks.check_hello(hello)
    if reason is None:
        assert wire_checks.NODE_ID_PATTERN.fullmatch(hello.node_id) and hello.node_id == "fuzz"
        assert wire_checks.MIN_INTERVAL_S <= hello.interval_s <= wire_checks.MAX_INTERVAL_S
    else:
        assert reason.startswith("hello.")


GOOD_HELLO = pb.Hello(node_id="fuzz", agent_instance="inst", interval_s=1.0,
                      inventory=convert.inventory_to_pb(inventory("fuzz")))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = Database(tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite")
    yield NodeStore(db)
    db.close()


@settings(BOUNDED, max_examples=300)
@given(messages=st.lists(agent_messages(), min_size=1, max_size=8))
def test_what_the_wire_checks_accept_the_store_can_write(store, messages):
    """Run as the ingest does: a message is checked, applied only if accepted; the batch must then write."""
    registry = NodeRegistry(clock=lambda: 1.8e9, decode_sample=lambda b: None)
    hello = GOOD_HELLO
    registry.hello(hello.node_id, cluster_id="", agent_version="", agent_instance=hello.agent_instance,
                   inventory=convert.inventory_from_pb(hello.inventory), interval_s=hello.interval_s)
    gpus = frozenset(g.index for g in hello.inventory.gpus)
    last = 0
    for msg in messages:
        msg.seq = min(last + msg.seq, 2**64 - 1)  # uint64 on the wire
        if wire_checks.check_seq(msg.seq, last) or wire_checks.check_dropped(msg.dropped_samples):
            break  # the stream ends here
        last = msg.seq
        body = msg.WhichOneof("body")
        if body == "sample":
            if wire_checks.check_sample(msg.sample, gpus):
                break
            figures = wire_checks.sample_figures(msg.sample)
            registry.record_sample(hello.node_id, msg.seq, figures, msg.sample.SerializeToString(), msg.dropped_samples)
        elif body == "health":
            if wire_checks.check_health(msg.health, gpus):
                break
            registry.record_health(hello.node_id, msg.seq, convert.health_from_pb(msg.health))
        else:
            if wire_checks.check_inventory(msg.inventory, hello.node_id):
                break
            registry.record_inventory(hello.node_id, msg.seq, convert.inventory_from_pb(msg.inventory))
    pending = registry.take_pending()
    try:
        store.write(pending)
    except (OverflowError, sqlite3.Error) as exc:  # the edge let through what SQLite cannot hold
        pytest.fail(f"accepted by the wire checks, refused by the store: {exc}")
    for event in pending.events:
        assert math.isfinite(event.event.timestamp)
