"""Governance (pre-check) policies: the action -> policy map and running a pre-check."""
