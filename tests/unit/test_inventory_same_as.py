"""Inventory hosts marked nodebook_same_as: never the default host (real ansible-inventory)."""

from pathlib import Path

import pytest

from driver.errors import NodebookError
from driver.inventory import load_cluster
from driver.session import Session

INVENTORY = """\
all:
  children:
    slurm_clusters:
      hosts:
        hpc:
          ansible_host: login.example.org
        hpc-otp:
          ansible_host: login.example.org
          ansible_port: 2222
          nodebook_same_as: hpc
"""


def test_second_way_in_is_not_the_default(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(INVENTORY)
    assert load_cluster(inv, None).name == "hpc"
    otp = load_cluster(inv, "hpc-otp")
    assert otp.port == 2222 and otp.same_as == "hpc"


def test_two_real_clusters_need_a_choice(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(INVENTORY.replace("          nodebook_same_as: hpc\n", ""))
    with pytest.raises(NodebookError, match="--cluster"):
        load_cluster(inv, None)


def test_endpoint_from_stats_and_from_the_ready_event() -> None:
    stats = {"nodebook_node": "cn01", "nodebook_socket": "/tmp/s", "nodebook_port": ""}
    event = {"node": "cn02", "socket": "", "port": "4242"}
    a, b = Session._endpoint_from(stats), Session._endpoint_from(event)
    assert (a.node, a.socket, a.port) == ("cn01", "/tmp/s", None)
    assert (b.node, b.socket, b.port) == ("cn02", None, 4242)
