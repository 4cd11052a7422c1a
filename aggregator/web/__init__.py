"""The HTTP side: the FastAPI app, body parsing and the aggregator's /healthz."""
