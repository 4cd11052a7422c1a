"""Stability checking: `nodes_data` from live telemetry, the checker, its verdict store,
notifications, and the HTTP and gRPC faces (docs/network-formats.md §5)."""
