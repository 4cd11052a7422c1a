"""What agents send: the ingest stream, wire checks, the live registry, its store, queries and the Node watch."""
