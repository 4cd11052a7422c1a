"""Session-wide test configuration: GPU-marked tests run only where a real GPU is."""

import os
import shutil

import pytest

pytest_plugins = ["tests.fakenvml.plugin"]


def _real_gpu_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None


def pytest_collection_modifyitems(config, items):
    if _real_gpu_present():
        return
    skip = pytest.mark.skip(reason="needs a real NVIDIA GPU and driver")
    for item in items:
        # The marker, not `"gpu" in item.keywords`: keywords also hold directory
        # names, and a checkout in a directory called "gpu" would skip everything.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
