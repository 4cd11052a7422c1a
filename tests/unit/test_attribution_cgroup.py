"""The cgroup parser on literal /proc/<pid>/cgroup files of each runtime and cgroup version."""

import pytest

from agent.attribution.cgroup import CgroupOwner, owner_from_cgroup
from tests.support.cgroups import CGROUP_FILES, UID_A


@pytest.mark.parametrize("name", sorted(CGROUP_FILES))
def test_each_runtime_and_cgroup_version(name):
    text, (scope, pod_uid, container_id, runtime) = CGROUP_FILES[name]
    assert owner_from_cgroup(text) == CgroupOwner(scope, pod_uid, container_id, runtime)


def test_pod_level_cgroup_without_a_container_is_still_the_pod():
    text = f"0::/kubepods/burstable/pod{UID_A}\n"
    assert owner_from_cgroup(text) == CgroupOwner("pod", UID_A, "", "")


def test_the_node_s_own_container_above_the_pod_is_not_the_process_s_container():
    node = "ab" * 32
    assert owner_from_cgroup(f"0::/docker/{node}/kubepods/burstable/pod{UID_A}\n") == CgroupOwner("pod", UID_A)


@pytest.mark.parametrize("text", ["", "0::/\n", "garbage without colons\n", "0::/kubepods/burstable/podnot-a-uid/xyz\n"])
def test_nothing_recognisable_is_the_host(text):
    assert owner_from_cgroup(text) == CgroupOwner("host")


def test_a_v1_line_naming_the_container_wins_over_a_pod_only_line():
    cid = "3a5b" * 16
    text = f"2:cpuset:/kubepods/burstable/pod{UID_A}\n1:memory:/kubepods/burstable/pod{UID_A}/{cid}\n"
    assert owner_from_cgroup(text) == CgroupOwner("pod", UID_A, cid, "")
