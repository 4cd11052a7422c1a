"""Pure conversion between the readings dataclasses and their protobuf wire form.

Every dataclass in `readings.py` has a message of the same name in
`telemetry.proto` with fields of the same names, so the conversion is driven
by the dataclass fields; the few shapes that differ are handled explicitly:

- `GpuInventory.compute_capability` (a (major, minor) tuple or None) is
  `compute_capability_major` / `_minor` on the wire;
- optional scalars (`int | None`, ...) are proto3 `optional` fields: None is
  "not set", never 0;
- `NodeSample.health_events` is not part of the wire `NodeSample`: the agent
  sends each health event as its own `AgentMessage` so that events are
  acknowledged (and never dropped) one by one. `sample_to_pb` leaves them out
  and `sample_from_pb` returns none;
- sizes: the readings hold bytes (`*_bytes`); the wire carries them and also
  fills the deprecated `*_mb` fields (bytes // MiB) for readers that know only
  those, and a message without `*_bytes` (an older agent) is read from its
  `*_mb` (`_LEGACY_MB`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from proto.telemetry.v1 import readings as r
from proto.telemetry.v1 import telemetry_pb2 as pb

__all__ = [
    "ConversionError",
    "acknowledgement_from_pb",
    "acknowledgement_to_pb",
    "from_pb",
    "health_from_pb",
    "health_to_pb",
    "inventory_from_pb",
    "inventory_to_pb",
    "sample_from_pb",
    "sample_to_pb",
    "to_pb",
]


class ConversionError(ValueError):
    """A protobuf message cannot be turned into the typed readings."""


# dataclass -> its protobuf message class
_PB_CLASS: dict[type, Any] = {
    r.MigDevice: pb.MigDevice,
    r.GpuInventory: pb.GpuInventory,
    r.DiskInfo: pb.DiskInfo,
    r.NicInfo: pb.NicInfo,
    r.HostInventory: pb.HostInventory,
    r.NodeInventory: pb.NodeInventory,
    r.NvLinkState: pb.NvLinkState,
    r.GpuSample: pb.GpuSample,
    r.NicRate: pb.NicRate,
    r.HostSample: pb.HostSample,
    r.CollectorStatus: pb.CollectorStatus,
    r.HealthEvent: pb.HealthEvent,
    r.NodeSample: pb.NodeSample,
    r.GpuProcess: pb.GpuProcess,
    r.MigSample: pb.MigSample,
    r.DeviceAllocation: pb.DeviceAllocation,
    r.ProcessOwner: pb.ProcessOwner,
    r.ResourceCount: pb.ResourceCount,
    r.Attribution: pb.Attribution,
    r.Acknowledgement: pb.Acknowledgement,
}

# the deprecated whole-MiB twin of each size in bytes: dataclass -> {bytes field: mb field}
_LEGACY_MB: dict[type, dict[str, str]] = {
    r.MigDevice: {"memory_bytes": "memory_mb"},
    r.GpuInventory: {"memory_bytes": "memory_mb"},
    r.DiskInfo: {"size_bytes": "size_mb"},
    r.HostInventory: {"memory_total_bytes": "memory_total_mb", "swap_total_bytes": "swap_total_mb"},
    r.GpuSample: {f"memory_{n}_bytes": f"memory_{n}_mb" for n in ("total", "used", "free", "reserved")},
    r.HostSample: {f"{n}_bytes": f"{n}_mb" for n in (
        "memory_total", "memory_used", "memory_available", "swap_total", "swap_used", "fs_total", "fs_used")},
}

# fields handled by hand (see the module docstring)
_SPECIAL = {
    (r.GpuInventory, "compute_capability"),
    (r.NodeSample, "health_events"),
}


@dataclasses.dataclass(frozen=True)
class _FieldPlan:
    name: str
    kind: str  # "scalar", "optional", "message", "optional_message", "repeated_scalar", "repeated_message"
    cls: type | None = None  # the nested dataclass for message kinds

    def nested(self) -> type:
        if self.cls is None:
            raise ConversionError(f"{self.name}: a {self.kind} field planned without its dataclass")
        return self.cls


def _plan(cls: type) -> tuple[_FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    plans = []
    for f in dataclasses.fields(cls):
        if (cls, f.name) in _SPECIAL:
            continue
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        optional = type(None) in args
        inner = [a for a in args if a is not type(None)]
        if origin is tuple:
            elem = args[0]
            if elem in _PB_CLASS:
                plans.append(_FieldPlan(f.name, "repeated_message", elem))
            else:
                plans.append(_FieldPlan(f.name, "repeated_scalar"))
        elif optional and len(inner) == 1 and inner[0] in _PB_CLASS:
            plans.append(_FieldPlan(f.name, "optional_message", inner[0]))
        elif hint in _PB_CLASS:
            plans.append(_FieldPlan(f.name, "message", hint))
        elif optional:
            plans.append(_FieldPlan(f.name, "optional"))
        else:
            plans.append(_FieldPlan(f.name, "scalar"))
    return tuple(plans)


_PLANS: dict[type, tuple[_FieldPlan, ...]] = {cls: _plan(cls) for cls in _PB_CLASS}
_DATACLASS_BY_PB: dict[Any, type] = {v.DESCRIPTOR.full_name: k for k, v in _PB_CLASS.items()}


def to_pb(value: Any) -> Any:
    """The protobuf message for any readings dataclass."""
    cls = type(value)
    try:
        msg = _PB_CLASS[cls]()
    except KeyError as e:
        raise ConversionError(f"no protobuf message for {cls.__name__}") from e
    _fill_pb(msg, value, cls)
    return msg


def _fill_pb(msg: Any, value: Any, cls: type) -> None:
    for plan in _PLANS[cls]:
        v = getattr(value, plan.name)
        kind = plan.kind
        if kind == "scalar":
            setattr(msg, plan.name, v)
        elif kind == "optional":
            if v is not None:
                setattr(msg, plan.name, v)
        elif kind == "repeated_scalar":
            if v:
                getattr(msg, plan.name).extend(v)
        elif kind == "repeated_message":
            container = getattr(msg, plan.name)
            for item in v:
                _fill_pb(container.add(), item, plan.nested())
        else:  # message / optional_message
            if v is not None:
                _fill_pb(getattr(msg, plan.name), v, plan.nested())
    if cls is r.GpuInventory and value.compute_capability is not None:
        msg.compute_capability_major, msg.compute_capability_minor = value.compute_capability
    for bytes_name, mb_name in _LEGACY_MB.get(cls, {}).items():
        size = getattr(value, bytes_name)
        if size is not None:
            setattr(msg, mb_name, size // r.MIB)


def from_pb(msg: Any, cls: type | None = None) -> Any:
    """The readings dataclass for a protobuf message (its class found by message name)."""
    if cls is None:
        try:
            cls = _DATACLASS_BY_PB[msg.DESCRIPTOR.full_name]
        except KeyError as e:
            raise ConversionError(f"no dataclass for {msg.DESCRIPTOR.full_name}") from e
    return _from_pb(msg, cls)


def _from_pb(msg: Any, cls: type) -> Any:
    kwargs: dict[str, Any] = {}
    for plan in _PLANS[cls]:
        kind = plan.kind
        name = plan.name
        if kind == "scalar":
            kwargs[name] = getattr(msg, name)
        elif kind == "optional":
            kwargs[name] = getattr(msg, name) if msg.HasField(name) else None
        elif kind == "repeated_scalar":
            kwargs[name] = tuple(getattr(msg, name))
        elif kind == "repeated_message":
            kwargs[name] = tuple(_from_pb(item, plan.nested()) for item in getattr(msg, name))
        elif kind == "message":
            kwargs[name] = _from_pb(getattr(msg, name), plan.nested())
        else:  # optional_message
            kwargs[name] = _from_pb(getattr(msg, name), plan.nested()) if msg.HasField(name) else None
    for bytes_name, mb_name in _LEGACY_MB.get(cls, {}).items():
        if kwargs[bytes_name] in (None, 0) and _is_set(msg, mb_name):  # an older writer: only the whole MiB
            kwargs[bytes_name] = getattr(msg, mb_name) * r.MIB
    if cls is r.GpuInventory:
        if msg.HasField("compute_capability_major") and msg.HasField("compute_capability_minor"):
            kwargs["compute_capability"] = (
                msg.compute_capability_major,
                msg.compute_capability_minor,
            )
        else:
            kwargs["compute_capability"] = None
    return cls(**kwargs)


def _is_set(msg: Any, name: str) -> bool:
    """proto3: an `optional` field says whether it was set; a plain scalar is set unless 0."""
    field = msg.DESCRIPTOR.fields_by_name[name]
    return msg.HasField(name) if field.has_presence else bool(getattr(msg, name))


def inventory_to_pb(inventory: r.NodeInventory) -> pb.NodeInventory:
    return to_pb(inventory)


def inventory_from_pb(msg: pb.NodeInventory) -> r.NodeInventory:
    return _from_pb(msg, r.NodeInventory)


def sample_to_pb(sample: r.NodeSample) -> pb.NodeSample:
    """The wire sample; `sample.health_events` travel separately (module docstring)."""
    return to_pb(sample)


def sample_from_pb(msg: pb.NodeSample) -> r.NodeSample:
    return _from_pb(msg, r.NodeSample)


def health_to_pb(event: r.HealthEvent) -> pb.HealthEvent:
    return to_pb(event)


def health_from_pb(msg: pb.HealthEvent) -> r.HealthEvent:
    return _from_pb(msg, r.HealthEvent)


def acknowledgement_to_pb(ack: r.Acknowledgement) -> pb.Acknowledgement:
    return to_pb(ack)


def acknowledgement_from_pb(msg: pb.Acknowledgement) -> r.Acknowledgement:
    return _from_pb(msg, r.Acknowledgement)
