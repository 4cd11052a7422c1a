"""schemathesis against the aggregator's OpenAPI document (issue 13): no input answers 5xx.

The whole HTTP app of `aios-aggregator serve` (in process: its registry,
stability checker, enrollment records, the cluster and pre-check routes),
served by its real uvicorn server on loopback, with the token, so the
writing routes are reached too. Bounded for CI: a fixed number of examples
per operation and a derandomized generator, so every run sends the same
requests in a few seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from aggregator.cluster.store import ClusterStore
from tests.support.telemetry import TOKEN, AggregatorThread

pytestmark = pytest.mark.integration

CLUSTER = {"id": "test-cluster", "regionId": "r1", "config": {}, "nodes": {"count": 0, "nodeData": []},
           "clusterMetadata": {"name": "fuzz"}, "tags": []}


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory):
    agg = AggregatorThread(tmp_path_factory.mktemp("openapi"), http=True)
    store = agg.aggregator.cluster_store
    assert isinstance(store, ClusterStore)
    store.put("test-cluster", CLUSTER)
    yield agg
    agg.close()


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation, mode: GenerationMode, url: str, seen: list) -> None:
    @settings(max_examples=10, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        seen.append((operation.label, response.status_code))
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        content_type = response.headers.get("content-type") or [""]
        if response.status_code >= 400 and content_type[0].startswith("application/json"):
            body = response.json()
            assert body.get("success") is False and "Traceback" not in str(body.get("message"))

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_request_answers_5xx(aggregator, mode):
    """Every operation of the document, with generated parameters and bodies (valid and not)."""
    operations = _operations(aggregator.http_url)
    assert len(operations) >= 10  # the whole API, not a fragment of it
    seen: list[tuple[str, int]] = []
    unsatisfiable: list[str] = []

    for operation in operations:
        try:
            _fuzz(operation, mode, aggregator.http_url, seen)
        except Unsatisfiable:  # nothing to vary (GET /healthz has no parameters to make invalid)
            unsatisfiable.append(operation.label)
    print("operations:", len(operations), "calls:", len(seen), "nothing to vary:", unsatisfiable)
    assert len({label for label, _ in seen}) + len(unsatisfiable) == len(operations)
    assert len(seen) >= 2 * len(operations)
