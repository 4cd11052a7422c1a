"""Operator policies: resolve, fetch, extract safely, install, and run them isolated.

Public API:
    open_policy(source, *, settings=None, parameters=None, config) -> PolicyHandle
    PolicyHandle.eval(input_data, parameters=None) / .management(action, data) / .close()
    PolicyError (.reason; PolicyRaised: the policy's own code raised), PolicyConfig (.from_env)
"""

from aggregator.policies.config import EXECUTION_MODES, PolicyConfig
from aggregator.policies.errors import PolicyConfigError, PolicyError, PolicyLoadError, PolicyRaised
from aggregator.policies.handle import PolicyHandle
from aggregator.policies.loader import open_policy

__all__ = [
    "EXECUTION_MODES",
    "PolicyConfig",
    "PolicyConfigError",
    "PolicyError",
    "PolicyHandle",
    "PolicyLoadError",
    "PolicyRaised",
    "open_policy",
]
