"""sandbox/cluster.py's choice of the CPU that makes the hosts' namespaces, and its check.

Linux 6.18 hands out namespace ids in per-CPU batches, and job_container/tmpfs fails a job's
launch when its namespace's id is not above the node's (docs/design.md). The kernel's answers
are faked here: which CPU ``up`` picks, and when its check stops ``up``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.harness.sandbox import cluster_module


@pytest.fixture
def cluster() -> Iterator[ModuleType]:
    with cluster_module("sandbox_cluster_unit") as module:
        yield module


def fake_kernel(monkeypatch, cluster, next_ids: dict[int, int], nodes: dict[str, int]) -> None:
    """Each CPU's next mount namespace id, and each compute node's (its anchor's pid = index)."""
    pids = {str(cluster.L.anchor_pid(h)): i for i, h in enumerate(cluster.COMPUTE, 1)}
    by_pid = {i: nodes[h.name] for i, h in enumerate(cluster.COMPUTE, 1)}
    monkeypatch.setattr(cluster, "next_mount_ns_ids", lambda: dict(next_ids))
    monkeypatch.setattr(cluster, "read_pid", lambda path: pids[str(path)])
    monkeypatch.setattr(cluster, "mount_ns_id", lambda pid: by_pid[pid])


def test_the_cpu_with_the_lowest_next_id_makes_the_hosts(monkeypatch, cluster) -> None:
    fake_kernel(monkeypatch, cluster, {0: 4410, 1: 312, 2: 8300}, {"cn01": 1, "cn02": 1})
    assert cluster.anchor_cpu() == 1


def test_no_pinning_where_the_kernel_does_not_tell(monkeypatch, cluster) -> None:
    fake_kernel(monkeypatch, cluster, {}, {"cn01": 1, "cn02": 1})
    assert cluster.anchor_cpu() is None
    cluster.check_mount_ns_order()  # nothing to compare: no error


def test_nodes_below_every_later_id_pass(monkeypatch, cluster) -> None:
    fake_kernel(monkeypatch, cluster, {0: 330, 1: 4411}, {"cn01": 326, "cn02": 329})
    cluster.check_mount_ns_order()


def test_a_node_above_a_cpu_s_next_id_stops_up_naming_it(monkeypatch, cluster) -> None:
    # as last session's cn02: made on CPU 1 (4377) while CPU 0 still hands out ids near 300
    fake_kernel(monkeypatch, cluster, {0: 314, 1: 4411}, {"cn01": 277, "cn02": 4377})
    with pytest.raises(cluster.SandboxError) as err:
        cluster.check_mount_ns_order()
    message = str(err.value)
    assert message.startswith("cn02's mount namespace has id 4377, but one made on CPU 0 now")
    assert "gets 314" in message and "EINVAL" in message and "`down` and `up` again" in message
