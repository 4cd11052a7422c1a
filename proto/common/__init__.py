"""Small rules both the agent and the aggregator follow (no wire format here)."""
