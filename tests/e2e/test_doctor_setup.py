"""`doctor` and `setup` subcommands against the sandbox (real sshd, Lmod, Slurm)."""

from __future__ import annotations

import json
import os

import pytest

from driver.errors import ExitCode
from tests.harness.setup import user_password

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

CHECKS = ["ssh", "setup", "python", "module", "slurm", "ports"]


def checks_of(d) -> dict[str, dict]:
    return {e["data"]["check"]: e for e in d.events if e["event"] == "info" and "data" in e}


def test_doctor_all_ok_one_line_per_check(sandbox, drive):
    d = drive(["doctor", "--cluster", "sandbox"])
    assert d.wait(timeout=120) == ExitCode.OK, d.events
    checks = checks_of(d)
    assert list(checks) == CHECKS
    assert all(c["data"]["ok"] is True for c in checks.values()), checks
    assert checks["module"]["message"].endswith("conda-python/3.11 available")
    assert "debug" in checks["slurm"]["message"]
    assert "host key checked" in checks["ssh"]["message"]
    assert not [e for e in d.events if e["event"] == "error"]


def test_doctor_standalone_server_needs_no_slurm(sandbox, drive):
    d = drive(["doctor", "--cluster", "sandbox-server"])
    assert d.wait(timeout=120) == ExitCode.OK, d.events
    assert "standalone server" in checks_of(d)["slurm"]["message"]


def test_doctor_with_sshd_stopped_says_cause_and_fix(sandbox, drive):
    sandbox.cluster("daemon", "sshd-login", "stop")
    try:
        d = drive(["doctor", "--cluster", "sandbox"])
        rc = d.wait(timeout=120)
    finally:
        sandbox.cluster("daemon", "sshd-login", "start")
    assert rc == ExitCode.SSH, d.events
    checks = checks_of(d)
    assert list(checks) == CHECKS  # still one line per check
    assert checks["ssh"]["data"]["ok"] is False and "Connection refused" in checks["ssh"]["message"]
    assert [checks[n]["data"]["ok"] for n in ("setup", "module", "slurm")] == [None] * 3
    assert checks["ports"]["data"]["ok"] is True
    (error,) = [e for e in d.events if e["event"] == "error"]
    assert error["message"].startswith("ssh: cause: cannot ssh to login")
    assert "; fix: " in error["message"] and error["data"]["fix"]
    # and once sshd is back, doctor is happy again
    again = drive(["doctor", "--cluster", "sandbox"])
    assert again.wait(timeout=120) == ExitCode.OK, again.events


def test_setup_with_a_bad_value_fails_with_its_exit_code(sandbox, drive, tmp_path):
    before = sandbox.host("login", ["cat", "/home/alice/.nodebook/setup.json"]).stdout
    # the password from a 0600 vars file (never argv), as `python -m driver setup` documents
    variables = {
        "nodebook_password_secret": user_password("alice"),
        "nodebook_jupyter_app": "bogus",
    }
    vars_file = tmp_path / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(variables, f)
    d = drive(["setup", "--cluster", "sandbox", "-e", f"@{vars_file}"])
    assert d.wait(timeout=180) == ExitCode.ERROR
    errors = [e for e in d.events if e["event"] == "error"]
    assert errors and "setup failed on sandbox" in errors[0]["message"]
    assert "bogus" in " ".join(str(e.get("message")) for e in d.events)
    # nothing was written
    assert sandbox.host("login", ["cat", "/home/alice/.nodebook/setup.json"]).stdout == before
