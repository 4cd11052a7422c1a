"""`serve_http` runs inside the caller's asyncio loop (beside grpc.aio) and stops when cancelled."""

import asyncio
import json
import urllib.request

import pytest

from aggregator.cluster.store import ClusterStore
from aggregator.db import Database
from aggregator.governance.prechecks import Governance
from aggregator.web.app import create_app
from aggregator.web.serving import serve_http

pytestmark = pytest.mark.integration


def test_serve_http_in_a_running_loop_and_cancel(tmp_path):
    db = Database(tmp_path / "a.db")
    store = ClusterStore(db)
    store.put("c1", {"id": "c1", "regionId": "r", "config": {}, "nodes": {}, "clusterMetadata": {}})
    app = create_app(governance=Governance(db, lambda uri: None), cluster_store=store, tokens=["t"])

    async def main():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, on_started=started.set_result))
        port = await asyncio.wait_for(started, 10)

        def fetch():
            request = urllib.request.Request(f"http://127.0.0.1:{port}/clusters/read/c1", headers={"Authorization": "Bearer t"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        answer = await asyncio.to_thread(fetch)  # the loop keeps serving while we wait
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(OSError):
            await asyncio.to_thread(fetch)
        return answer

    assert asyncio.run(main())["data"]["id"] == "c1"
    db.close()
