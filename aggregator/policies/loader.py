"""`open_policy`: from a source string to a running `PolicyHandle`."""

from __future__ import annotations

from aggregator.policies.config import PolicyConfig
from aggregator.policies.errors import PolicyConfigError
from aggregator.policies.fetch import fetch_package, is_package_location
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.local import LocalPolicy
from aggregator.policies.remote import RemotePolicy
from aggregator.policies.requirements import REQUIREMENTS_FILE, install_requirements
from aggregator.policies.sidecar_client import SidecarPolicy
from aggregator.policies.source import resolve_source
from aggregator.policies.worker import WorkerSpec

__all__ = ["open_policy"]


def open_policy(
    source: str,
    *,
    settings: dict | None = None,
    parameters: dict | None = None,
    config: PolicyConfig,
) -> PolicyHandle:
    """Load a policy (URI, URL/path of an archive, or directory) and have it ready to run.

    Local mode: resolve, fetch, extract, install requirements, start the worker
    and build the instance now, so a broken package fails here. Remote mode:
    the executor loads the policy by URI, so only a URI can run remotely.
    With `config.sidecar_url` set, the policy-runner sidecar does all of this
    (its own env picks the mode) and the handle forwards to it.
    """
    if config.sidecar_url:
        sidecar = SidecarPolicy(source, settings=settings, parameters=parameters, config=config)
        sidecar.start()
        return sidecar

    if config.mode == "remote":
        if is_package_location(source):
            raise PolicyConfigError(
                f"{source}: remote execution runs policies by policy rule URI, not by package location"
            )
        config.require_remote()
        return RemotePolicy(
            source.strip(),
            executor_host_url=config.executor_host_url,
            executor_id=config.executor_id,
            parameters=parameters,
            timeout_s=config.http_timeout_s,
        )

    resolved = resolve_source(
        source,
        settings=settings,
        parameters=parameters,
        policy_db_url=config.policy_db_url,
        timeout_s=config.http_timeout_s,
    )
    package = fetch_package(
        resolved.location,
        cache_dir=config.cache_dir,
        timeout_s=config.download_timeout_s,
        max_bytes=config.max_download_bytes,
        max_extracted_bytes=config.max_extracted_bytes,
    )
    site_dir = install_requirements(
        package.code_dir,
        package.work_dir,
        enabled=config.install_requirements,
        timeout_s=config.pip_timeout_s,
        limits=config.sandbox_limits,
    )
    hint = ""
    if not config.install_requirements and (package.code_dir / REQUIREMENTS_FILE).is_file():
        hint = (
            f"the package has a {REQUIREMENTS_FILE} but installing requirements is turned off "
            "(AIOS_POLICY_INSTALL_REQUIREMENTS=0)"
        )
    label = resolved.uri or resolved.location
    handle = LocalPolicy(
        WorkerSpec(
            label=label,
            code_dir=package.code_dir,
            site_dir=site_dir,
            settings=resolved.settings,
            parameters=resolved.parameters,
            memory_limit_mb=config.memory_limit_mb,
            load_timeout_s=config.load_timeout_s,
            max_result_bytes=config.max_result_bytes,
            limits=config.sandbox_limits,
            scratch_root=config.cache_dir / "scratch",
        ),
        uri=resolved.uri,
        call_timeout_s=config.call_timeout_s,
        load_hint=hint,
    )
    handle.start()
    return handle
