"""Onboarding: the cluster document from measured data, its registration with
the network's parser, and the enrollment of nodes that join later.

Modules: `validate` (the operator's config.json), `document` (pure builders),
`gather` (agents + Kubernetes, pure), `sources` (reading them), `parser_client`,
`command` (the CLI), `enrollment` (later nodes), `cluster_service` (gRPC read/store).
"""
