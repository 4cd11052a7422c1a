"""The HTTP side: `base` (errors, token rule, bodies; shared by every app), `serving` (uvicorn),
`app` (the aggregator's API), `json_body`, `healthz`."""
