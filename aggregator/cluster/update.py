"""Updating a stored cluster document: `$set`, type check, `update_cluster` pre-check, atomic store.

The pre-check runs outside the database transaction (a policy may take
seconds); the store then writes only if the document is still the one the
update was computed from, and otherwise starts over (a few times, then
`UpdateConflict`). So an update is applied whole, on the document it was
checked against, or not at all.
"""

from __future__ import annotations

from typing import Any

from aggregator.cluster.patch import InvalidClusterDocument, apply_set, cluster_document_problems
from aggregator.cluster.store import ClusterStore, Document
from aggregator.governance.prechecks import Governance
from aggregator.strict_json import StrictJsonError

__all__ = ["ClusterUpdater", "PolicyBrokeDocument", "UpdateConflict", "UpdateRefused"]


class UpdateRefused(Exception):
    """The `update_cluster` pre-check said no; `reason` is its answer."""

    def __init__(self, reason: str, policy_uri: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.policy_uri = policy_uri


class PolicyBrokeDocument(Exception):
    """The pre-check allowed the update but returned a document that is not valid."""


class UpdateConflict(Exception):
    """The document kept changing underneath the update."""


class _Changed(Exception):
    pass


class ClusterUpdater:
    def __init__(self, store: ClusterStore, governance: Governance, *, attempts: int = 3) -> None:
        self._store = store
        self._governance = governance
        self._attempts = attempts

    def update(self, cluster_id: str, changes: dict[str, Any]) -> Document:
        """The stored document after the update. Raises UnknownCluster, ClusterPatchError,
        InvalidClusterDocument, UpdateRefused, PolicyBrokeDocument, UpdateConflict."""
        for _ in range(self._attempts):
            base = self._store.get(cluster_id)
            candidate = apply_set(base, changes)
            problems = cluster_document_problems(candidate)
            if candidate.get("id") != cluster_id:
                problems.append(f"id: cannot be changed (the cluster is {cluster_id!r})")
            if problems:
                raise InvalidClusterDocument(problems)
            verdict = self._governance.precheck("update_cluster", {"cluster_data": candidate})
            if not verdict.allowed:
                raise UpdateRefused(verdict.reason, verdict.policy_uri)
            final = self._accepted_document(verdict.input_data, candidate, cluster_id, verdict.policy_uri)

            def swap(current: Document, base: Document = base, final: Document = final) -> Document:
                if current != base:
                    raise _Changed
                return final

            try:
                return self._store.update(cluster_id, swap)
            except _Changed:
                continue
            except StrictJsonError as exc:  # nothing was written; say whose document it was
                if verdict.policy_uri is None:
                    raise InvalidClusterDocument([f"{exc.path}: {exc.problem}"]) from exc
                raise PolicyBrokeDocument(
                    f"update_cluster policy {verdict.policy_uri} returned a document that is not strict JSON "
                    f"at {exc.path}: {exc.problem}"
                ) from exc
        raise UpdateConflict(f"cluster {cluster_id!r} changed {self._attempts} times during the update; try again")

    @staticmethod
    def _accepted_document(returned: Any, candidate: Document, cluster_id: str, uri: str | None) -> Document:
        if uri is None:  # no policy: the candidate itself
            return candidate
        if not isinstance(returned, dict) or "cluster_data" not in returned:
            raise PolicyBrokeDocument(
                f"update_cluster policy {uri} allowed the update but returned no 'cluster_data'"
            )
        document = returned["cluster_data"]
        problems = cluster_document_problems(document)  # says so when it is not an object
        if isinstance(document, dict) and document.get("id") != cluster_id:
            problems.append(f"id: cannot be changed (the cluster is {cluster_id!r})")
        if problems or not isinstance(document, dict):
            raise PolicyBrokeDocument(
                f"update_cluster policy {uri} returned an invalid cluster document: {'; '.join(problems)}"
            )
        return document
