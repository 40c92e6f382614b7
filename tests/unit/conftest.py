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
