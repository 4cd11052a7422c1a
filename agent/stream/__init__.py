"""The agent's one long-lived gRPC stream to the aggregator."""
