"""The default host: hosts marked nodebook_same_as never are; a lone host of any kind is
(real ansible-inventory)."""

from pathlib import Path

import pytest

from driver.errors import NodebookError
from driver.inventory import load_cluster
from driver.session import endpoint_of

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


def test_a_lone_standalone_server_is_the_default(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts:\n    ws:\n      nodebook_scheduler: none\n")
    assert load_cluster(inv, None).name == "ws"


def test_a_server_beside_one_cluster_leaves_the_cluster_the_default(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(INVENTORY + "        ws:\n          nodebook_scheduler: none\n")
    assert load_cluster(inv, None).name == "hpc"


def test_endpoint_from_the_connection_info() -> None:
    a = endpoint_of({"node": "cn01", "socket": "/tmp/s", "port": None})
    b = endpoint_of({"node": "cn02", "socket": None, "port": 4242, "host": "10.0.0.2"})
    assert (a.node, a.socket, a.port) == ("cn01", "/tmp/s", None)
    assert (b.node, b.socket, b.port, b.host) == ("cn02", None, 4242, "10.0.0.2")
