"""Compute capability -> architecture and features, on literal capabilities."""

import pytest

from agent.gpu.features import architecture_for, describe_capability, features_for


@pytest.mark.parametrize(
    "cc, arch",
    [
        ((3, 7), "kepler"),
        ((5, 2), "maxwell"),
        ((6, 0), "pascal"),
        ((6, 1), "pascal"),
        ((7, 0), "volta"),
        ((7, 2), "volta"),
        ((7, 5), "turing"),
        ((8, 0), "ampere"),
        ((8, 6), "ampere"),
        ((8, 7), "ampere"),
        ((8, 9), "ada"),
        ((9, 0), "hopper"),
        ((10, 0), "blackwell"),
        ((10, 3), "blackwell"),
        ((11, 0), "blackwell"),
        ((12, 0), "blackwell"),
        ((12, 1), "blackwell"),
        ((2, 0), "unknown"),
        ((13, 0), "unknown"),
    ],
)
def test_architecture_by_capability(cc, arch):
    assert architecture_for(cc) == arch


def test_t4_turing():
    assert features_for((7, 5)) == ("fp32", "fp16", "int8", "int4", "tensor_cores", "tensor_cores_gen2")


def test_v100_volta():
    assert features_for((7, 0)) == ("fp32", "fp64", "fp16", "int8", "tensor_cores", "tensor_cores_gen1")


def test_a100_ampere():
    assert features_for((8, 0)) == (
        "fp32", "fp64", "fp16", "bf16", "tf32", "int8", "int4",
        "tensor_cores", "tensor_cores_gen3", "fp64_tensor_cores", "structured_sparsity",
    )  # fmt: skip


def test_ga10x_has_no_full_rate_fp64():
    features = features_for((8, 6))
    assert "bf16" in features and "tf32" in features and "tensor_cores_gen3" in features
    assert "fp64" not in features and "fp64_tensor_cores" not in features and "fp8" not in features


def test_ada_l4_has_fp8_and_transformer_engine():
    features = features_for((8, 9))
    assert {"fp8", "transformer_engine", "tensor_cores_gen4", "int4"} <= set(features)
    assert "fp64" not in features


def test_h100_hopper():
    assert features_for((9, 0)) == (
        "fp32", "fp64", "fp16", "bf16", "tf32", "fp8", "int8",
        "tensor_cores", "tensor_cores_gen4", "fp64_tensor_cores", "structured_sparsity",
        "transformer_engine", "tma", "thread_block_clusters", "dpx",
    )  # fmt: skip


def test_b200_blackwell():
    features = features_for((10, 0))
    assert {"fp4", "fp6", "fp8", "bf16", "fp64", "tensor_cores_gen5", "transformer_engine"} <= set(features)
    assert "int4" not in features and "dpx" not in features


def test_rtx_blackwell_12_0():
    features = features_for((12, 0))
    assert {"fp4", "fp8", "tensor_cores_gen5"} <= set(features)
    assert "fp64" not in features


def test_pascal_fp16_only_on_6_0_and_6_2():
    assert "fp16" in features_for((6, 0)) and "fp16" in features_for((6, 2))
    assert "fp16" not in features_for((6, 1))
    assert "int8" in features_for((6, 1)) and "int8" not in features_for((6, 0))
    assert "tensor_cores" not in features_for((6, 0))


def test_kepler_k80_has_fp64_but_no_half_precision():
    assert features_for((3, 7)) == ("fp32", "fp64")


def test_unknown_capability_claims_nothing():
    assert features_for((13, 0)) == ()
    assert describe_capability((13, 0)).architecture == "unknown"


def test_no_capability_gives_empty_facts():
    facts = describe_capability(None)
    assert facts.architecture == "" and facts.features == ()
