"""The measured code's state: the benchmarks' own outputs never make a run "dirty"."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import host


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_only_code_changes_count(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "bench").mkdir()
    results, code = tmp_path / "bench" / "last-run.json", tmp_path / "driver.py"
    results.write_text("{}\n")
    code.write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(host, "REPO", tmp_path)
    monkeypatch.setattr(host, "OUTPUTS", (results,))
    results.write_text('{"new": 1}\n')  # what make chaos leaves before make bench
    assert host.code_state()["dirty"] is False
    code.write_text("x = 2\n")
    state = host.code_state()
    assert state["dirty"] is True and state["dirty_paths"] == ["driver.py"]
