"""pytest fixtures for the fake NVML (registered in tests/conftest.py).

- `fake_nvml_lib` (session): the directory holding the compiled fake
  `libnvidia-ml.so.1`, built once per session. Skips the test when no C
  compiler or no nvml.h is available (say, on the GPU machine's image).
- `fake_nvml` (function): a `FakeNvml` writing its own config file in the
  test's tmp_path; merge `fake_nvml.env` into a subprocess environment.
"""

from __future__ import annotations

import pytest

from tests.fakenvml import FakeNvml, FakeNvmlBuildError, build_fake_nvml


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory):
    try:
        return build_fake_nvml(tmp_path_factory.mktemp("fakenvml"))
    except FakeNvmlBuildError as exc:
        pytest.skip(f"fake NVML unavailable: {exc}")


@pytest.fixture
def fake_nvml(fake_nvml_lib, tmp_path):
    return FakeNvml(fake_nvml_lib, tmp_path / "fake-nvml.conf")
