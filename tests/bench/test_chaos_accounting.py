"""The chaos loop's accounting, without the sandbox: any leftover the checker reports fails the
path (a fake leftover file on a node included), the leftover checker finds a real file at a
path the helper reports on a node, and the table and JSON carry every count."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import chaos, docs
from tests.harness import leftovers


def test_a_clean_round_does_not_fail() -> None:
    res = chaos.Result("sigint")
    chaos.record(res, {})
    assert not res.failed and res.count() == 0


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("jobs", "jobs"),
        ("remote_processes", "processes"),
        ("laptop_processes", "local_processes"),
        ("port", "ports"),
        ("remote_files", "files"),
        ("local_files", "local_files"),
        ("unknown_paths", "errors"),
        ("something_new", "errors"),  # a kind the checker adds later still fails the round
    ],
)
def test_every_kind_of_leftover_fails_the_path(kind: str, field: str) -> None:
    res = chaos.Result("sigkill")
    chaos.record(res, {kind: ["x"]})
    assert res.failed and len(getattr(res, field)) == 1
    assert res.as_json()["failed"] is True
    assert res.as_json()["counts"][field] == 1


def test_a_leftover_connection_file_fails_and_is_counted_in_the_table() -> None:
    res = chaos.Result("sigint", rounds=1)
    chaos.record(res, {"remote_files": ["login:/home/alice/.nodebook/jobs/7/connection.json"]})
    assert res.failed
    table = docs.t_chaos({}, {"results": [res.as_json()]}).splitlines()  # printed and on the page
    cells = [c.strip() for c in table[-1].split("|")[1:-1]]
    assert "files left" in table[0] and cells[0] == "sigint" and cells[-1] == "MISSED"
    # rounds, failed, bad exit, jobs, procs, laptop procs, ports, files
    assert cells[1:9] == ["1", "0", "0", "0", "0", "0", "0", "1"]


def test_wrong_exit_a_broken_session_and_errors_fail() -> None:
    for field in ("bad_exit", "not_survived", "errors"):
        res = chaos.Result("slurmctld-restart")
        getattr(res, field).append("x")
        assert res.failed, field
    res = chaos.Result("sigint", retried=["a start broken by someone else"])
    assert not res.failed  # a redone start is shown, not a failure


def test_sigkill_exit_code_is_the_real_wait_status() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    proc.kill()
    assert proc.wait() in chaos.EXPECTED["sigkill"]
    assert all(-9 not in codes for path, codes in chaos.EXPECTED.items() if path != "sigkill")


class FakeSandbox:
    """Answers the helper's `paths` and runs the existence check locally: a host's files are
    under root/HOST."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self, job: str) -> dict[str, str]:
        run = f"/tmp/nodebook-alice-{job}"
        jobs = f"/home/alice/.nodebook/jobs/{job}"
        return {
            "connection": f"{jobs}/connection.json",
            "heartbeat": f"{jobs}/heartbeat",
            "job_dir": jobs,
            "seen": f"{jobs}/.seen",
            "pid_file": f"{jobs}/pid",
            "runtime_dir": run,
            "socket": f"{run}/jupyter.sock",
            "hop_socket": f"{run}/hop.sock",
        }

    def host(self, name: str, argv: Sequence[str], user: str | None = None, **kw: Any) -> Any:
        job = argv[-1].split()[-1]
        line = json.dumps({"nodebook": "paths", "job_id": job, **self.paths(job)})
        return subprocess.CompletedProcess(argv, 0, line + "\n", "")

    def out(self, name: str, argv: Sequence[str], user: str | None = None, **kw: Any) -> str:
        script, args = argv[2], list(argv[4:])
        local = [str(self.root / name) + p for p in args]
        done = subprocess.run(["sh", "-c", script, "sh", *local], capture_output=True, text=True)
        prefix = str(self.root / name)
        return "".join(line.removeprefix(prefix) + "\n" for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    ("host", "key"),
    [("cn02", "socket"), ("cn01", "runtime_dir"), ("login", "connection"), ("login", "seen")],
)
def test_a_fake_leftover_file_on_a_host_is_found_and_fails_the_round(
    tmp_path: Path, host: str, key: str
) -> None:
    sandbox = FakeSandbox(tmp_path)
    scope = leftovers.Scope(user="alice", job_ids={"4242"}, base=f"test-{key}")
    assert leftovers.cluster_files(sandbox, scope) == []  # type: ignore[arg-type]
    path = sandbox.paths("4242")[key]
    target = tmp_path / host / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("token=secret" if key == "connection" else "")
    found = leftovers.cluster_files(sandbox, scope)  # type: ignore[arg-type]
    # the file, and the directory it is in when that is one of the job's paths too
    assert f"{host}:{path}" in found and all(f.startswith(f"{host}:") for f in found), found
    res = chaos.Result("sigkill")
    chaos.record(res, {"remote_files": found})
    assert res.failed and f"{host}:{path}" in res.files
