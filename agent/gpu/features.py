"""What a CUDA compute capability implies: architecture name and features.

A pure function of the capability, from NVIDIA's published architecture facts
(CUDA C++ Programming Guide, "Compute Capabilities", and the architecture
whitepapers), so a scheduler can ask for "bf16" rather than for model names.

Feature names:
  fp16, bf16, tf32, fp8, fp6, fp4   arithmetic formats the GPU computes natively
                                    (fp16: full-speed half precision, not the
                                    1/64-rate path of compute capability 6.1)
  fp64                              high-throughput double precision (at least
                                    1/3 of the fp32 rate: the data-center parts)
  int8                              8-bit integer dot products (dp4a or tensor)
  int4                              4-bit integer tensor-core math
  tensor_cores, tensor_cores_genN   tensor cores and their generation (1..5)
  fp64_tensor_cores                 double precision on tensor cores
  structured_sparsity               2:4 sparse tensor-core math
  transformer_engine                FP8 tensor math with per-tensor scaling
  tma, thread_block_clusters, dpx   Hopper's memory and programming features

An unknown capability gives architecture "unknown" and no features: guessing
features for hardware this code has not seen would put false labels on a node.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ArchitectureFacts", "architecture_for", "describe_capability", "features_for"]


@dataclass(frozen=True)
class ArchitectureFacts:
    architecture: str
    features: tuple[str, ...]


# major -> architecture; minors are checked where an architecture splits.
_ARCH_BY_MAJOR = {
    3: "kepler",
    5: "maxwell",
    6: "pascal",
    7: "volta",  # 7.5 is Turing, handled below
    8: "ampere",  # 8.9 is Ada Lovelace, handled below
    9: "hopper",
    10: "blackwell",
    11: "blackwell",  # Jetson Thor (numbered 10.1 before CUDA 13)
    12: "blackwell",  # RTX 50 series, RTX PRO Blackwell, GB10
}

# Capabilities with full-rate double precision (Tesla K20/K40/K80, P100,
# V100, A100/A30, H100/H200, B200).
_FP64_HPC = {(3, 5), (3, 7), (6, 0), (7, 0), (8, 0), (9, 0), (10, 0)}


def architecture_for(cc: tuple[int, int]) -> str:
    major, minor = cc
    if (major, minor) == (7, 5):
        return "turing"
    if (major, minor) == (8, 9):
        return "ada"
    return _ARCH_BY_MAJOR.get(major, "unknown")


def _tensor_core_generation(cc: tuple[int, int]) -> int | None:
    if cc < (7, 0):
        return None
    if cc < (7, 5):
        return 1  # Volta, Xavier
    if cc < (8, 0):
        return 2  # Turing
    if cc < (8, 9):
        return 3  # Ampere (A100, GA10x, Orin)
    if cc < (10, 0):
        return 4  # Ada, Hopper
    return 5  # Blackwell


def features_for(cc: tuple[int, int]) -> tuple[str, ...]:
    """Features implied by a compute capability, in a fixed order."""
    if architecture_for(cc) == "unknown":
        return ()
    major, _minor = cc
    features: list[str] = ["fp32"]
    if cc in _FP64_HPC:
        features.append("fp64")
    if cc in {(5, 3), (6, 0), (6, 2)} or cc >= (7, 0):
        features.append("fp16")
    if cc >= (8, 0):
        features += ["bf16", "tf32"]
    if cc == (8, 9) or cc >= (9, 0):
        features.append("fp8")
    if major >= 10:
        features += ["fp6", "fp4"]
    if cc >= (6, 1):
        features.append("int8")
    # int4 tensor math: Turing and Ampere/Ada; Hopper and later dropped it.
    if (7, 5) <= cc < (9, 0):
        features.append("int4")
    generation = _tensor_core_generation(cc)
    if generation is not None:
        features += ["tensor_cores", f"tensor_cores_gen{generation}"]
    if cc in {(8, 0), (9, 0), (10, 0)}:
        features.append("fp64_tensor_cores")
    if cc >= (8, 0):
        features.append("structured_sparsity")
    if cc == (8, 9) or cc >= (9, 0):
        features.append("transformer_engine")
    if cc >= (9, 0):
        features += ["tma", "thread_block_clusters"]
    if major == 9:
        features.append("dpx")
    return tuple(features)


def describe_capability(cc: tuple[int, int] | None) -> ArchitectureFacts:
    if cc is None:
        return ArchitectureFacts("", ())
    return ArchitectureFacts(architecture_for(cc), features_for(cc))
