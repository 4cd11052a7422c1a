"""Where the execution mode and executor id come from (env over cluster config over default)."""

import pytest

from aggregator.policies import PolicyConfig, PolicyConfigError

CLUSTER = {"policyExecutionMode": "remote", "policyExecutorId": "exec-from-cluster"}


def test_defaults_to_local():
    config = PolicyConfig.from_env({})
    assert (config.mode, config.executor_id) == ("local", "")


def test_cluster_config_applies_when_env_is_unset():
    config = PolicyConfig.from_env({}, CLUSTER)
    assert (config.mode, config.executor_id) == ("remote", "exec-from-cluster")


def test_env_from_the_kubectl_patch_wins_over_the_cluster_config():
    to_local = {"POLICY_EXECUTION_MODE": "local", "POLICY_SYSTEM_EXECUTOR_ID": ""}
    config = PolicyConfig.from_env(to_local, CLUSTER)
    assert config.mode == "local"
    to_remote = {"POLICY_EXECUTION_MODE": "remote", "POLICY_SYSTEM_EXECUTOR_ID": "exec-9",
                 "POLICY_EXECUTOR_HOST_URL": "http://executor:8000/", "POLICY_DB_URL": "http://db/"}
    config = PolicyConfig.from_env(to_remote, {"policyExecutionMode": "local"})
    assert (config.mode, config.executor_id) == ("remote", "exec-9")
    assert (config.executor_host_url, config.policy_db_url) == ("http://executor:8000", "http://db")
    config.require_remote()


def test_bad_values_are_named():
    with pytest.raises(PolicyConfigError, match="POLICY_EXECUTION_MODE='cloud': .* one of local, remote"):
        PolicyConfig.from_env({"POLICY_EXECUTION_MODE": "cloud"})
    with pytest.raises(PolicyConfigError, match="config.policyExecutionMode='cloud'"):
        PolicyConfig.from_env({}, {"policyExecutionMode": "cloud"})
    with pytest.raises(PolicyConfigError, match="AIOS_POLICY_TIMEOUT_S='soon'"):
        PolicyConfig.from_env({"AIOS_POLICY_TIMEOUT_S": "soon"})
    with pytest.raises(PolicyConfigError, match="needs an executor id"):
        PolicyConfig.from_env({"POLICY_EXECUTION_MODE": "remote"}).require_remote()
    assert PolicyConfig.from_env({"AIOS_POLICY_INSTALL_REQUIREMENTS": "0"}).install_requirements is False
