"""The agent's Kubernetes side: client, node identity, the annotation and its annotator."""
