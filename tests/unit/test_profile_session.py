"""The profile_session suite (tests/conftest.py PROFILE_SESSION: what `make test-profile` runs
on the sandbox's other profiles) names tests that exist: a renamed test would leave it quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROFILE_SESSION, in_profile_session

REPO = Path(__file__).resolve().parents[2]


def test_every_entry_names_collected_tests_and_only_they_are_marked():
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    every = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    marked = subprocess.run([*argv, "-m", "profile_session"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    ids = [line for line in every.stdout.splitlines() if "::" in line]
    chosen = [line for line in marked.stdout.splitlines() if "::" in line]
    assert len(ids) > 100, every.stdout[-2000:] + every.stderr[-2000:]
    for entry in PROFILE_SESSION:
        assert any(in_profile_session(i) and i.startswith(entry) for i in ids), entry
    assert chosen == [i for i in ids if in_profile_session(i)] != []
