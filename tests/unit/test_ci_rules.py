"""The suite's own rules: in CI a skipped test fails the run; without root the sandbox tests
fail with a clear message instead of skipping (a run that tests nothing must not pass)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def pytest_run(
    tmp: Path, body: str, env: dict[str, str], plugin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run pytest on one test file (in tmp) with the suite's conftest.py as a plugin."""
    test = tmp / "test_rules.py"
    test.write_text(body)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    argv += ["-p", plugin] if plugin else []
    return subprocess.run(
        [*argv, "--rootdir", str(tmp), str(test)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skipped_test_fails_the_run_in_ci(tmp_path: Path) -> None:
    body = "import pytest\n\ndef test_skips():\n    pytest.skip('nothing tested')\n"
    assert pytest_run(tmp_path, body, {"CI": ""}).returncode == 0
    ci = pytest_run(tmp_path, body, {"CI": "true"})
    assert ci.returncode == 1 and "skipped test(s) count as failed" in ci.stdout


def test_without_root_the_sandbox_tests_fail_and_say_why(tmp_path: Path) -> None:
    # A plugin that makes the run look unprivileged (the venv's Python may live where another
    # user cannot execute it, so the run cannot really change its user).
    (tmp_path / "as_a_user.py").write_text("import os\nos.geteuid = lambda: 1000\n")
    body = "def test_needs_the_sandbox(sandbox):\n    assert sandbox\n"
    env = {"CI": "", "PYTHONPATH": str(tmp_path)}
    res = pytest_run(tmp_path, body, env, plugin="as_a_user")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "the sandbox cluster needs root" in res.stdout and "make unit" in res.stdout
