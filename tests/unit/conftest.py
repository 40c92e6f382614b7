"""Unit tests never touch this machine's real state or temp dirs: a command run here would
prune what it takes for a killed driver's leftovers (a live benchmark's master among them)."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def private_state_and_temp(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("isolated")
    (root / "tmp").mkdir()
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(root / "state"))
    monkeypatch.setattr(tempfile, "tempdir", str(root / "tmp"))


@pytest.fixture
def cluster(tmp_path):
    """A home with the remote helper installed, a setup.json and a fake Slurm
    (tests/unit/helper_cluster.py; the helper's tests, tests/unit/test_remote_helper_*.py)."""
    from tests.unit.helper_cluster import Cluster

    return Cluster(tmp_path)
