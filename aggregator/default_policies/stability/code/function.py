"""Default stability policy of the AIOS aggregator (standard library only).

Used when the cluster document names no `config.stabilityChecker`. It reads
the aggregator's `nodes_data` (docs/stability-policies.md) and says the
cluster is unstable when any of these holds:

- a node is stale (its agent stopped reporting);
- a GPU is lost (fell off the bus, stopped answering, vanished from the sample);
- an XID from `fatal_xids` was seen within `xid_window_s` and not acknowledged;
- a GPU has uncorrectable ECC errors or a failed row remap
  (`row_remap_pending_is_fatal` makes a pending remap count too);
- a throttle reason from `throttle_reasons` has lasted longer than
  `throttle_threshold_s`.

`stability_check_data` lists every finding with node, GPU and reason.

Recovery from an XID: it stops counting once older than `xid_window_s`, or
when an operator acknowledges it (`management("acknowledge", {...})`): the
XIDs seen so far are ignored, newer ones count again.

Management actions: `get_state`, `set_parameters` (`{"parameters": {...}}` or
the parameters themselves), `acknowledge` (optional `node_id`, `gpu`),
`reset` (back to the parameters the policy was created with, acks cleared).
"""

import copy

# NVIDIA's XID guidance names these as GPU faults that need a reset, a drain
# or service: 48 double-bit ECC error; 63/64 ECC page retirement / row-remap
# recording event and its failure; 74 NVLink error; 79 GPU fell off the bus;
# 94/95 contained/uncontained ECC error. Added here: 119 and 120 (GSP RPC
# timeout / GSP error: the GPU's system processor stopped answering and the
# GPU needs a reset before it is usable again) and 154 (the driver's "GPU
# recovery action changed": it is telling us a reset or reboot is required).
# Not 92 (high single-bit ECC rate): corrected errors, a warning for service,
# not a reason to stop scheduling.
DEFAULT_FATAL_XIDS = [48, 63, 64, 74, 79, 94, 95, 119, 120, 154]

# Thermal slowdowns and the external power brake mean cooling or power supply
# trouble. `sw_power_cap` is left out: a busy GPU sits at its power cap in
# normal operation.
DEFAULT_THROTTLE_REASONS = [
    "hw_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "sw_thermal_slowdown",
]

DEFAULT_PARAMETERS = {
    "fatal_xids": DEFAULT_FATAL_XIDS,
    "xid_window_s": 3600.0,
    "throttle_reasons": DEFAULT_THROTTLE_REASONS,
    "throttle_threshold_s": 300.0,
    "unstable_on_stale_nodes": True,
    "unstable_on_lost_gpus": True,
    "unstable_on_ecc_uncorrectable": True,
    "row_remap_pending_is_fatal": False,
    # the registry's own judgement of a node ("unhealthy"): off by default, the
    # policy judges the measurements itself (so `fatal_xids` stays the rule)
    "unstable_on_unhealthy_nodes": False,
}

_NUMBER = (int, float)
_TYPES = {
    "fatal_xids": (list,),
    "xid_window_s": _NUMBER,
    "throttle_reasons": (list,),
    "throttle_threshold_s": _NUMBER,
    "unstable_on_stale_nodes": (bool,),
    "unstable_on_lost_gpus": (bool,),
    "unstable_on_ecc_uncorrectable": (bool,),
    "row_remap_pending_is_fatal": (bool,),
    "unstable_on_unhealthy_nodes": (bool,),
}

# what the list parameters hold
_ELEMENTS = {"fatal_xids": (int, "integers"), "throttle_reasons": (str, "strings")}


class PolicyInputError(ValueError):
    """The input or a parameter is not what this policy reads."""


def _checked(parameters):
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise PolicyInputError("parameters: expected an object")
    checked = {}
    for name, value in parameters.items():
        if name not in _TYPES:
            raise PolicyInputError("parameters.%s: unknown parameter (known: %s)" % (name, ", ".join(sorted(_TYPES))))
        expected = _TYPES[name]
        if isinstance(value, bool) and bool not in expected:
            raise PolicyInputError("parameters.%s: expected a number or list, got a boolean" % name)
        if not isinstance(value, expected):
            kind = "a number" if expected is _NUMBER else expected[0].__name__
            raise PolicyInputError("parameters.%s: expected %s, got %r" % (name, kind, value))
        if isinstance(value, list):
            element, label = _ELEMENTS[name]
            if not all(isinstance(x, element) and not isinstance(x, bool) for x in value):
                raise PolicyInputError("parameters.%s: expected a list of %s" % (name, label))
        checked[name] = copy.deepcopy(value)
    return checked


class AIOSv1PolicyRule:
    def __init__(self, rule_id, settings, parameters):
        self.rule_id = rule_id
        self.settings = settings or {}
        self._initial = dict(DEFAULT_PARAMETERS, **_checked(parameters))
        self._overrides = {}  # set through management: they win over per-call parameters
        self._acked = {}  # (node_id, gpu, xid) -> last_time acknowledged
        self._last_xids = {}  # what the last evaluation saw, for `acknowledge`
        self._last_verdict = None

    # ------------------------------------------------------------ evaluation

    def _effective(self, parameters):
        merged = dict(self._initial)
        merged.update(_checked(parameters))
        merged.update(self._overrides)
        return merged

    def eval(self, parameters, input_data, context):
        p = self._effective(parameters)
        if not isinstance(input_data, dict) or not isinstance(input_data.get("nodes_data"), list):
            raise PolicyInputError("input_data.nodes_data: expected a list")
        fatal = set(p["fatal_xids"])
        watched = set(p["throttle_reasons"])
        findings = []
        unhealthy_nodes = set()
        seen_xids = {}
        for n, node in enumerate(input_data["nodes_data"]):
            if not isinstance(node, dict) or "node_id" not in node:
                raise PolicyInputError("input_data.nodes_data[%d]: expected an object with node_id" % n)
            node_id = node["node_id"]
            if node.get("stale") or node.get("state") == "stale":
                if p["unstable_on_stale_nodes"]:
                    findings.append(_finding(node_id, None, "stale", "no report for %ss" % node.get("seconds_since_seen")))
                continue
            if node.get("status") == "unhealthy":
                unhealthy_nodes.add(node_id)
            for gpu in node.get("gpus") or []:
                gpu_id = gpu.get("id")
                health = gpu.get("health") or {}
                if gpu.get("lost") and p["unstable_on_lost_gpus"]:
                    findings.append(_finding(node_id, gpu, "gpu_lost", gpu.get("lost_reason") or "GPU lost"))
                for xid in health.get("xids") or []:
                    code = xid.get("code")
                    key = (node_id, gpu_id, code)
                    seen_xids[key] = xid.get("last_time")
                    if code not in fatal or (xid.get("age_s") or 0) > p["xid_window_s"]:
                        continue
                    acked = self._acked.get(key)
                    if acked is not None and xid.get("last_time") is not None and xid["last_time"] <= acked:
                        continue
                    reason = "XID %s seen %s time(s), last %ss ago" % (code, xid.get("count"), xid.get("age_s"))
                    findings.append(_finding(node_id, gpu, "xid", reason, xid=code))
                if p["unstable_on_ecc_uncorrectable"] and (
                    (health.get("ecc_uncorrected_volatile") or 0) > 0 or (health.get("ecc_uncorrectable_events") or 0) > 0
                ):
                    reason = "uncorrectable ECC errors: %s" % health.get("ecc_uncorrected_volatile")
                    findings.append(_finding(node_id, gpu, "ecc_uncorrectable", reason))
                if health.get("row_remap_failure"):
                    findings.append(_finding(node_id, gpu, "row_remap_failure", "row remapping failed: the GPU needs service"))
                if health.get("row_remap_pending") and p["row_remap_pending_is_fatal"]:
                    findings.append(_finding(node_id, gpu, "row_remap_pending", "a row remap is pending: reset the GPU"))
                for throttle in health.get("throttle") or []:
                    duration = throttle.get("duration_s")
                    if throttle.get("reason") in watched and duration is not None and duration > p["throttle_threshold_s"]:
                        reason = "%s for %ss (threshold %ss)" % (throttle["reason"], duration, p["throttle_threshold_s"])
                        findings.append(_finding(node_id, gpu, "throttle", reason, throttle_reason=throttle["reason"]))
        self._last_xids = seen_xids
        other_unhealthy = sorted(unhealthy_nodes - {f["node_id"] for f in findings})
        if p["unstable_on_unhealthy_nodes"]:
            for node_id in other_unhealthy:
                findings.append(_finding(node_id, None, "node_unhealthy", "the node reports itself unhealthy"))
        nodes = input_data["nodes_data"]
        is_stable = not findings
        self._last_verdict = is_stable
        return {
            "is_stable": is_stable,
            "stability_check_data": {
                "reasons": findings,
                "unstable_nodes": sorted({f["node_id"] for f in findings}),
                "nodes_checked": len(nodes),
                "gpus_checked": sum(len(n.get("gpus") or []) for n in nodes),
                "policy": "aios-default-stability",
            },
        }

    # ------------------------------------------------------------ management

    def management(self, action, data):
        data = data or {}
        if action == "get_state":
            return {
                "parameters": self._effective(None),
                "overrides": copy.deepcopy(self._overrides),
                "acknowledged": [
                    {"node_id": k[0], "gpu": k[1], "xid": k[2], "up_to": v} for k, v in sorted(self._acked.items(), key=repr)
                ],
                "last_is_stable": self._last_verdict,
            }
        if action == "set_parameters":
            new = data.get("parameters", data)
            self._overrides.update(_checked(new))
            return {"parameters": self._effective(None)}
        if action == "acknowledge":
            node_id, gpu = data.get("node_id"), data.get("gpu")
            acked = []
            for key, last_time in self._last_xids.items():
                if (node_id is None or key[0] == node_id) and (gpu is None or key[1] == gpu):
                    self._acked[key] = last_time
                    acked.append({"node_id": key[0], "gpu": key[1], "xid": key[2], "up_to": last_time})
            return {"acknowledged": acked}
        if action == "reset":
            self._overrides = {}
            self._acked = {}
            return {"parameters": self._effective(None)}
        raise PolicyInputError("unknown management action %r (known: get_state, set_parameters, acknowledge, reset)" % (action,))


def _finding(node_id, gpu, reason, detail, **extra):
    finding = {"node_id": node_id, "gpu": None, "gpu_uuid": None, "reason": reason, "detail": detail}
    if gpu is not None:
        finding["gpu"] = gpu.get("id")
        finding["gpu_uuid"] = gpu.get("uuid")
    finding.update(extra)
    return finding
