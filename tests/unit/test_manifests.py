"""The manifests an operator applies: schema-valid, and the guide's kubectl patch works on them."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Two current minor versions of the Kubernetes schemas (and the oldest we claim).
K8S_VERSIONS = ("1.30.0", "1.33.0", "1.36.0")

# The seed's (cluster-user.md) two patches, verbatim apart from <executor_id>.
SWITCH_TO_REMOTE = [
    {"op": "add", "path": "/spec/template/spec/containers/1/env", "value": []},
    {
        "op": "add",
        "path": "/spec/template/spec/containers/1/env/-",
        "value": {"name": "POLICY_EXECUTION_MODE", "value": "remote"},
    },
    {
        "op": "add",
        "path": "/spec/template/spec/containers/1/env/-",
        "value": {"name": "POLICY_SYSTEM_EXECUTOR_ID", "value": "executor-7"},
    },
]
SWITCH_TO_LOCAL = [
    {
        "op": "replace",
        "path": "/spec/template/spec/containers/1/env",
        "value": [
            {"name": "POLICY_EXECUTION_MODE", "value": "local"},
            {"name": "POLICY_SYSTEM_EXECUTOR_ID", "value": ""},
        ],
    }
]


def raw_manifest_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or DEPLOY / "addons" in path.parents:
            continue  # the add-ons' files include patches: they are validated rendered (test_addons_manifests.py)
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def clean_checkout_of_deploy(target: Path) -> Path:
    """deploy/ as a fresh clone has it: the files git tracks, nothing an operator created or left."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", "deploy"], capture_output=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked source archive): it is what was shipped
        shutil.copytree(DEPLOY, target / "deploy")
        return target / "deploy"
    for name in filter(None, listed.stdout.decode().split("\0")):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    return target / "deploy"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    """`kubectl kustomize deploy/` of a clean clone, nothing created by hand first."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    deploy = clean_checkout_of_deploy(tmp_path_factory.mktemp("clone"))
    done = subprocess.run([kubectl, "kustomize", str(deploy)], capture_output=True, text=True)
    assert done.returncode == 0, f"kubectl kustomize deploy/ of a clean clone failed: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_raw_manifest_is_schema_valid(version):
    docs = raw_manifest_docs()
    assert len(docs) >= 10
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} ({doc['kind']}) invalid for {version}: {exc}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_kustomization_is_schema_valid(rendered, version):
    kinds = sorted(d["kind"] for d in rendered)
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)
    assert kinds.count("ConfigMap") == 3 and "DaemonSet" in kinds
    assert "Secret" not in kinds  # the aggregator creates it: nobody types a token


def test_strict_validation_catches_a_misspelt_field():
    # The validator is only worth something if it refuses a typo.
    doc = copy.deepcopy(next(d for p, d in raw_manifest_docs() if d["kind"] == "DaemonSet"))
    doc["spec"]["template"]["spec"]["tolerashuns"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_deployment_is_named_after_the_cluster_id(rendered):
    cluster = find(rendered, "ConfigMap", "aios-cluster")
    cluster_id = cluster["data"]["AIOS_CLUSTER_ID"]
    deployment = find(rendered, "Deployment")
    assert deployment["metadata"]["name"] == f"{cluster_id}-controller"
    assert deployment["metadata"]["namespace"] == "controllers"


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_seed_patch_switches_policy_container_to_remote_and_back(rendered):
    deployment = find(rendered, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers[1]["name"] == "policy-runner"
    assert "policy-sidecar" in containers[1]["args"]
    assert _env(containers[1]) == {"POLICY_EXECUTION_MODE": "local", "POLICY_SYSTEM_EXECUTOR_ID": ""}

    remote = jsonpatch.apply_patch(deployment, SWITCH_TO_REMOTE)
    remote_containers = remote["spec"]["template"]["spec"]["containers"]
    # What `kubectl get ... -o jsonpath={.spec.template.spec.containers[1].env}` shows afterwards.
    assert remote_containers[1]["env"] == [
        {"name": "POLICY_EXECUTION_MODE", "value": "remote"},
        {"name": "POLICY_SYSTEM_EXECUTOR_ID", "value": "executor-7"},
    ]
    # The patch replaces the container's whole env list: the runner must still
    # get everything else it needs (config maps, token file in args) and the
    # aggregator container must be untouched.
    assert remote_containers[1]["envFrom"] == containers[1]["envFrom"]
    assert "--token-file" in remote_containers[1]["args"]
    assert remote_containers[0] == containers[0]
    kubernetes_validate.validate(remote, K8S_VERSIONS[-1], strict=True)

    local = jsonpatch.apply_patch(remote, SWITCH_TO_LOCAL)
    assert _env(local["spec"]["template"]["spec"]["containers"][1]) == {
        "POLICY_EXECUTION_MODE": "local",
        "POLICY_SYSTEM_EXECUTOR_ID": "",
    }
    # And the result is the manifest we shipped.
    assert json.dumps(local, sort_keys=True) == json.dumps(deployment, sort_keys=True)


POLICIES_SERVICE = "http://policies-system.registries.svc.cluster.local:10000"


def container_env(docs: list[dict], container: dict) -> dict[str, str]:
    """What the container's process sees: its ConfigMaps (envFrom), then its own `env` on top."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(find(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def test_the_guides_remote_switch_alone_gives_the_runner_a_complete_setting(rendered):
    from aggregator.policies.runner_health import read_runner_settings

    remote = jsonpatch.apply_patch(find(rendered, "Deployment"), SWITCH_TO_REMOTE)
    runner = remote["spec"]["template"]["spec"]["containers"][1]
    settings = read_runner_settings(container_env(rendered, runner), sidecar_url="")
    assert settings.problem == ""
    assert (settings.config.mode, settings.config.executor_id) == ("remote", "executor-7")
    assert settings.config.executor_host_url == POLICIES_SERVICE  # the network's in-cluster policies service
    assert settings.config.policy_db_url == POLICIES_SERVICE


def test_the_token_secret_is_created_by_the_aggregator_and_waited_for(rendered):
    deployment, daemonset = find(rendered, "Deployment"), find(rendered, "DaemonSet", "aios-agent")
    aggregator = deployment["spec"]["template"]["spec"]["containers"][0]
    secret_name = _env(aggregator)["AIOS_TOKEN_SECRET"]
    assert secret_name == "aios-token"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    # optional: the pod starts before the Secret exists; the kubelet fills the volume later
    assert volumes["token"]["secret"] == {"secretName": secret_name, "defaultMode": 0o440, "optional": True}
    # the agents hold no shared token (a projected ServiceAccount token), so they wait for nothing
    agent_volumes = daemonset["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in agent_volumes if v.get("secret", {}).get("secretName") == secret_name]
    # the aggregator may read that Secret by name, and create Secrets in its namespace, nothing more
    rules = [rule for doc in rendered if doc["kind"] == "Role" and doc["metadata"]["namespace"] == "controllers"
             for rule in doc["rules"] if "secrets" in rule["resources"]]
    assert sorted((rule["verbs"], rule.get("resourceNames")) for rule in rules) == [
        (["create"], None), (["get"], [secret_name])]
    binding = find(rendered, "RoleBinding", "aios-aggregator-token")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aios-aggregator", "namespace": "controllers"}]


def test_agent_daemonset_runs_everywhere_without_claiming_gpus(rendered):
    ds = find(rendered, "DaemonSet", "aios-agent")
    pod = ds["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    (agent,) = pod["containers"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    for section in ("requests", "limits"):
        assert not any("nvidia.com" in key for key in agent["resources"].get(section, {}))
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/host/proc"]["readOnly"] and mounts["/host/sys"]["readOnly"]
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"


def test_agent_reads_the_kubelet_socket_read_only_with_no_capability(rendered):
    """Who is on the GPU (docs/rbac.md): the pod-resources directory read-only, the host's PIDs,
    and uid 0 without any capability (the socket is root's)."""
    pod = find(rendered, "DaemonSet", "aios-agent")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "pod-resources")
    assert mount == {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "pod-resources")
    assert volume["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["AIOS_POD_RESOURCES_SOCKET"] == "/var/lib/kubelet/pod-resources/kubelet.sock"
    assert pod["hostPID"] is True
    context = agent["securityContext"]
    assert (context["runAsUser"], context["runAsNonRoot"], context["allowPrivilegeEscalation"]) == (0, False, False)
    assert context["capabilities"] == {"drop": ["ALL"]} and "add" not in context["capabilities"]
    # nothing else of the host is writable
    assert all(m.get("readOnly") for m in agent["volumeMounts"] if m["mountPath"] != "/tmp")


def test_the_no_attribution_component_restores_nobody(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    (tmp_path / "deploy" / "token").write_text("0123456789abcdef\n")
    kustomization = tmp_path / "deploy" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "\ncomponents:\n  - components/no-gpu-attribution\n")
    out = subprocess.run([kubectl, "kustomize", str(tmp_path / "deploy")], capture_output=True, text=True, check=True).stdout
    ds = find([d for d in yaml.safe_load_all(out) if d], "DaemonSet", "aios-agent")
    kubernetes_validate.validate(ds, K8S_VERSIONS[-1], strict=True)
    pod = ds["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    assert "hostPID" not in pod
    assert (agent["securityContext"]["runAsUser"], agent["securityContext"]["runAsNonRoot"]) == (65534, True)
    assert {e["name"]: e.get("value") for e in agent["env"]}["AIOS_ATTRIBUTION"] == "off"


def _mounted_volume(pod: dict, container: dict, path: str) -> dict:
    """The volume of `pod` that `container` mounts at the folder holding `path`."""
    mounts = sorted(container["volumeMounts"], key=lambda m: -len(m["mountPath"]))
    mount = next(m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/"))
    return next(v for v in pod["volumes"] if v["name"] == mount["name"])


def test_agents_prove_their_node_with_a_projected_token_and_hold_no_shared_one(rendered):
    pod = find(rendered, "DaemonSet", "aios-agent")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    path = _env(agent)["AIOS_SA_TOKEN_FILE"]
    volume = _mounted_volume(pod, agent, path)
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "aios-aggregator" and path.endswith("/" + token["path"])
    assert 600 <= token["expirationSeconds"] <= 86400  # the kubelet rotates it at 80 %
    assert "AIOS_TOKEN_FILE" not in _env(agent) and "AIOS_TOKEN" not in _env(agent)
    assert not any(v.get("secret", {}).get("secretName") == "aios-token" for v in pod["volumes"])


def test_the_policy_runner_has_its_own_token_and_none_of_the_aggregators(rendered):
    pod = find(rendered, "Deployment")["spec"]["template"]["spec"]
    aggregator, runner = pod["containers"]
    runner_token = runner["args"][runner["args"].index("--token-file") + 1]
    assert _env(aggregator)["AIOS_POLICY_SIDECAR_TOKEN_FILE"] == runner_token
    assert "emptyDir" in _mounted_volume(pod, runner, runner_token)
    assert _mounted_volume(pod, aggregator, runner_token)["name"] == _mounted_volume(pod, runner, runner_token)["name"]
    secret_volumes = {v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "aios-token"}
    assert secret_volumes and not secret_volumes & {m["name"] for m in runner["volumeMounts"]}
    assert {"AIOS_TOKEN", "AIOS_TOKEN_FILE"}.isdisjoint(_env(runner))
    # the pod's API token is masked in the runner, which needs no API
    masked = _mounted_volume(pod, runner, "/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert "emptyDir" in masked
    # root only for starting workers under their own uids, with just those capabilities
    context = runner["securityContext"]
    assert context["runAsUser"] == 0 and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) <= {"SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert aggregator["securityContext"].get("runAsUser", pod["securityContext"]["runAsUser"]) != 0
