"""The remote helper (roles/nodebook_job/files/nodebook-remote) without the sandbox.

Each test gets a home with a setup.json as the role writes it and a fake Slurm on PATH
(tests/unit/fake_slurm.py: sbatch, squeue, scontrol, scancel, sacct, sinfo over one JSON state
file that also records every call). Every line the helper prints must be JSON.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driver.paths import HELPER, LAUNCHER, helper_protocol

FAKE = Path(__file__).with_name("fake_slurm.py")


@dataclass
class Result:
    rc: int
    lines: list[dict[str, Any]]
    stderr: str

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["nodebook"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kind(kind)
        assert len(found) == 1, (kind, self.lines, self.stderr)
        return found[0]


@dataclass
class Cluster:
    """A home, a setup.json and a fake Slurm; `run` calls the helper as the driver would."""

    tmp: Path
    home: Path = field(init=False)
    base: Path = field(init=False)
    bin: Path = field(init=False)
    state_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.base = self.home / ".nodebook"
        self.bin = self.tmp / "bin"
        for d in (self.base / "jobs", self.base / "bin", self.bin):
            d.mkdir(parents=True)
        for name in ("sbatch", "squeue", "scontrol", "scancel", "sacct", "sinfo", "sacctmgr"):
            (self.bin / name).symlink_to(FAKE)
        (self.base / "bin" / "nodebook-remote").symlink_to(HELPER)
        (self.base / "bin" / "nodebook-jupyter").symlink_to(LAUNCHER)
        self.state_file = self.tmp / "slurm.json"
        self.write_setup()
        self.slurm = {"jobs": {}, "next_id": 100}
        self.save()

    def write_setup(self, **changes: Any) -> None:
        setup = {
            "format": 2,
            "app": "lab",
            "python": sys.executable,
            "bin_dir": str(self.tmp / "venv-bin"),
            "config_dir": str(self.base / "jupyter"),
            "job_script": str(self.base / "job.sbatch"),
            "jobs_dir": str(self.base / "jobs"),
            "runtime_base": str(self.tmp / "node-tmp"),
            "job_name": "nodebook",
            "endpoint": "socket",
            "heartbeat_timeout": 600,
            "start_timeout": 20,
            "poll_interval": 1,
            "modules": ["conda-python/3.11"],
            "packages": {"jupyterlab": "4.6.6", "python": "3.11"},
        }
        setup.update(changes)
        # As the role writes it: to_nice_json(indent=2) is json.dumps(indent=2, sort_keys=True).
        text = json.dumps(
            {k: v for k, v in setup.items() if v is not None}, indent=2, sort_keys=True
        )
        (self.base / "setup.json").write_text(text + "\n")

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.slurm))

    def load(self) -> dict[str, Any]:
        self.slurm = json.loads(self.state_file.read_text())
        return self.slurm

    def job(self, job_id: str, **fields: Any) -> None:
        self.load()
        job = {"id": job_id, "name": "nodebook", "state": "PENDING", "reason": "Priority"}
        job.update(user=os.environ.get("USER", "tester"), comment="", node="", start="N/A")
        job.update(fields)
        self.slurm["jobs"][job_id] = job
        self.save()

    def calls(self, cmd: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.load().get("calls", []) if cmd is None or c["cmd"] == cmd]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": "tester",
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FAKE_SLURM_STATE": str(self.state_file),
            "SSH_CONNECTION": "10.0.0.1 1 10.0.0.2 22",
            "SLURM_CONF": "/etc/slurm/slurm.conf",
            **extra,
        }

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Result:
        argv = [str(self.base / "bin" / "nodebook-remote"), *args]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env or self.env(),
            cwd=self.home,
            timeout=timeout,
            check=False,
        )
        lines = []
        for line in proc.stdout.splitlines():
            parsed = json.loads(line)  # every line is JSON
            assert isinstance(parsed, dict) and "nodebook" in parsed, line
            lines.append(parsed)
        return Result(proc.returncode, lines, proc.stderr)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


# ------------------------------------------------------------------------------- the protocol


def test_protocol_version_is_read_from_the_helper_itself() -> None:
    assert helper_protocol() >= 2


def test_a_driver_speaking_another_protocol_is_told_to_rerun_setup(cluster: Cluster) -> None:
    res = cluster.run("--protocol", "999", "list")
    assert res.rc == 3
    err = res.one("error")
    assert err["error"] == "version" and "nodebook setup" in err["message"]
    assert not cluster.calls("squeue")


def test_not_set_up_names_the_user_and_the_fix(cluster: Cluster) -> None:
    (cluster.base / "setup.json").unlink()
    res = cluster.run("--protocol", str(helper_protocol()), "submit")
    assert res.rc == 3
    assert res.one("error")["error"] == "not-set-up"
    assert (
        "tester" in res.one("error")["message"] and "nodebook setup" in res.one("error")["message"]
    )
    assert not cluster.calls("sbatch")


def test_an_older_setup_json_asks_for_setup_again(cluster: Cluster) -> None:
    cluster.write_setup(format=1)
    res = cluster.run("list")
    assert res.rc == 3 and "again" in res.one("error")["message"]


def test_version_and_paths(cluster: Cluster) -> None:
    assert cluster.run("version").one("version")["protocol"] == helper_protocol()
    paths = cluster.run("paths", "123").one("paths")
    assert paths["connection"] == str(cluster.base / "jobs/123/connection.json")
    assert paths["runtime_dir"] == str(cluster.tmp / "node-tmp/nodebook-tester-123")
    assert paths["socket"].endswith("nodebook-tester-123/jupyter.sock")
    assert cluster.run("paths", "1;rm").rc == 2


# ------------------------------------------------------------------------------- submit


def test_submit_passes_a_clean_environment_and_the_options(cluster: Cluster) -> None:
    res = cluster.run(
        "submit", "--tag", "abc123", "--heartbeat", "90", "--endpoint", "tcp", "--",
        "--time=01:00:00", "--cpus-per-task=2",
    )  # fmt: skip
    assert res.rc == 0, res
    sub = res.one("submitted")
    assert sub["job_id"] == "100" and sub["heartbeat_timeout"] == 90
    assert sub["socket"].endswith("nodebook-tester-100/jupyter.sock")
    status = res.one("status")  # the first state, in the same round trip
    assert status["state"] == "PENDING" and status["waiting"] is True
    (call,) = cluster.calls("sbatch")
    assert "--job-name=nodebook" in call["argv"] and "--comment=nodebook:abc123" in call["argv"]
    assert "--export=ALL" in call["argv"] and "--time=01:00:00" in call["argv"]
    assert call["argv"][-1] == str(cluster.base / "job.sbatch")
    env = call["env"]
    assert env["NODEBOOK_HEARTBEAT_TIMEOUT"] == "90" and env["NODEBOOK_ENDPOINT"] == "tcp"
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf"
    assert "SSH_CONNECTION" not in env and "SLURM_GET_USER_ENV" not in env
    assert (cluster.base / "jobs/100.seen").exists()


def test_submit_uses_setups_heartbeat_by_default(cluster: Cluster) -> None:
    res = cluster.run("submit")
    assert res.one("submitted")["heartbeat_timeout"] == 600
    assert cluster.calls("sbatch")[0]["env"]["NODEBOOK_HEARTBEAT_TIMEOUT"] == "600"
    assert "NODEBOOK_ENDPOINT" not in cluster.calls("sbatch")[0]["env"]


def test_second_session_is_refused_unless_allowed(cluster: Cluster) -> None:
    cluster.job("77", state="RUNNING", node="cn01", user="tester")
    res = cluster.run("submit")
    assert res.rc == 8
    assert res.one("session")["job_id"] == "77"
    assert "attach 77" in res.one("error")["message"]
    assert not cluster.calls("sbatch")
    assert cluster.run("submit", "--allow-second").rc == 0


def test_a_second_session_listens_on_the_nodes_loopback_unless_told_otherwise(
    cluster: Cluster,
) -> None:
    """pam_slurm_adopt puts a tunnel's ssh into the newest of the user's jobs on a node, and
    job_container/tmpfs gives each job its own /tmp: a second session's socket could be out of
    the first one's tunnel's sight, and the reverse. Loopback TCP is shared by every job."""
    assert cluster.run("submit").one("submitted")["endpoint"] == "socket"  # the only one
    cluster.job("77", state="RUNNING", node="cn01", user="tester")
    second = cluster.run("submit", "--allow-second").one("submitted")
    assert second["endpoint"] == "tcp"
    assert cluster.calls("sbatch")[-1]["env"]["NODEBOOK_ENDPOINT"] == "tcp"
    chosen = cluster.run("submit", "--allow-second", "--endpoint", "socket").one("submitted")
    assert chosen["endpoint"] == "socket"  # the user's choice stands


@pytest.mark.parametrize(
    ("slurm_says", "fix"),
    [
        ("Invalid account or account/partition combination specified", "sacctmgr"),
        (
            "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
            "--time",
        ),
        ("Invalid qos specification", "--qos"),
        ("Requested node configuration is not available", "--gpus"),
        ("Memory required by task is not available", "--mem"),
    ],
)
def test_each_kind_of_refusal_gets_its_fix(cluster: Cluster, slurm_says: str, fix: str) -> None:
    cluster.slurm["sbatch_error"] = slurm_says
    cluster.save()
    res = cluster.run("submit")
    assert res.rc == 5 and slurm_says in res.one("error")["message"]
    assert fix in res.one("error")["message"].split(slurm_says)[1]


def accounts(cluster: Cluster, *mine: str) -> None:
    """The user's Slurm accounts (the first their default) and a partition for chemistry only."""
    cluster.slurm["accounts"] = list(mine)
    cluster.slurm["partitions"] = {
        "debug": {"default": True},
        "chem": {"allow_accounts": "chemistry"},
        "shared": {"allow_accounts": "physics,chemistry"},
    }
    cluster.save()


@pytest.mark.parametrize(
    ("mine", "options", "fix"),
    [
        (  # alice: her default account is not admitted, her other one is
            ("physics", "chemistry"),
            ["--partition=chem"],
            "partition chem admits only the account chemistry, not physics (your default "
            "account): pass --account chemistry (nodebook_job_account in the inventory keeps it)",
        ),
        (  # the account given is not admitted (and is not called the default)
            ("physics", "chemistry"),
            ["--partition=chem", "--account=physics"],
            "partition chem admits only the account chemistry, not physics: pass --account "
            "chemistry",
        ),
        (  # bob: none of his accounts is admitted
            ("physics",),
            ["-p", "chem"],
            "partition chem admits only the account chemistry, not physics (your default "
            "account), and none of yours (physics) is admitted: pick another --partition",
        ),
        (  # a partition open to every account: the account is not the user's
            ("physics", "chemistry"),
            ["--account=biology"],
            "account biology is not one of yours (physics, chemistry): pass --account with one "
            "of them",
        ),
    ],
)
def test_an_account_refusal_names_what_the_partition_admits_and_the_fix(
    cluster: Cluster, mine: tuple[str, ...], options: list[str], fix: str
) -> None:
    accounts(cluster, *mine)
    res = cluster.run("submit", "--", *options)
    assert res.rc == 5, res
    message = res.one("error")["message"]
    assert "\n" not in message
    # sbatch's own prefixes are left out: the cause comes first
    assert message.startswith("sbatch refused the job: Invalid account or account/partition")
    assert fix in message.split("specified; ", 1)[1]
    assert not cluster.load()["jobs"]  # nothing queued


def test_an_account_refusal_reads_the_partition_from_the_job_script(cluster: Cluster) -> None:
    accounts(cluster, "physics", "chemistry")
    (cluster.base / "job.sbatch").write_text(
        "#!/bin/bash -l\n# comment\n#SBATCH --partition=chem\n#SBATCH --time=01:00:00\n"
        "exec true\n#SBATCH --partition=debug\n"  # after the first command: not sbatch's
    )
    message = cluster.run("submit").one("error")["message"]
    assert "partition chem admits only the account chemistry, not physics" in message
    # an option on the command line comes before the script's
    cluster.run("submit", "--", "--account=chemistry").one("submitted")


def test_accounts_are_asked_only_on_a_refusal(cluster: Cluster) -> None:
    accounts(cluster, "physics", "chemistry")
    cluster.run("submit", "--", "--partition=chem", "--account=chemistry").one("submitted")
    assert not cluster.calls("sacctmgr")
    assert not [c for c in cluster.calls("scontrol") if "partition" in c["argv"]]


def test_sbatch_refusal_is_its_last_line_with_a_fix(cluster: Cluster) -> None:
    cluster.slurm["sbatch_error"] = "invalid partition specified: nope"
    cluster.save()
    res = cluster.run("submit", "--", "--partition=nope")
    assert res.rc == 5
    err = res.one("error")
    assert err["error"] == "refused" and "invalid partition specified: nope" in err["message"]
    assert "sinfo" in err["message"]


def test_slurm_down_is_a_scheduler_error(cluster: Cluster) -> None:
    cluster.slurm["down"] = True
    cluster.save()
    res = cluster.run("submit")
    assert res.rc == 5 and "Slurm does not answer" in res.one("error")["message"]


def test_bad_arguments_are_usage_errors(cluster: Cluster) -> None:
    assert cluster.run("submit", "--tag", "a b").rc == 2
    assert cluster.run("submit", "--endpoint", "udp").rc == 2
    assert cluster.run("frobnicate").rc == 2
    assert not cluster.calls("sbatch")


# ------------------------------------------------------------------------------- wait


def seen(cluster: Cluster, job: str, fp: str, last: int | None = None) -> None:
    t = int(time.time()) if last is None else last
    (cluster.base / "jobs" / f"{job}.seen").write_text(f"{t}|{t}|{fp}\n")


def test_wait_reports_a_change_at_once(cluster: Cluster) -> None:
    cluster.job("5", state="PENDING", reason="Resources", start="2026-12-01T10:00:00")
    seen(cluster, "5", "PENDING|Priority||", last=int(time.time()) - 10)
    started = time.monotonic()
    res = cluster.run("wait", "5", "--window", "20")
    assert time.monotonic() - started < 3
    st = res.one("status")
    assert (st["state"], st["reason"], st["start"], st["waiting"]) == (
        "PENDING", "Resources", "2026-12-01T10:00:00", True,
    )  # fmt: skip


def test_wait_blocks_while_nothing_changes_and_queries_rarely(cluster: Cluster) -> None:
    cluster.job("6", state="PENDING", reason="Resources")
    seen(cluster, "6", "PENDING|Resources||")  # just reported
    started = time.monotonic()
    res = cluster.run("wait", "6", "--window", "3")
    assert time.monotonic() - started >= 2  # the window counts whole seconds
    assert res.one("status")["state"] == "PENDING"
    # the last report was just now: no query within the next 5 s
    assert not cluster.calls("scontrol") and not cluster.calls("squeue")


def test_the_poll_loops_wait_without_forking_sleep(cluster: Cluster) -> None:
    """wait and connection look at the shared file system every FS_POLL s: with read's timeout,
    not one `sleep` process per look (a `sleep` first on PATH logs every call)."""
    calls = cluster.tmp / "sleep-calls"
    fake = cluster.bin / "sleep"
    fake.write_text(f'#!/bin/sh\necho "$@" >>{calls}\nexec /bin/sleep "$@"\n')
    fake.chmod(0o755)
    cluster.job("8", state="PENDING", reason="Resources")
    seen(cluster, "8", "PENDING|Resources||")
    started = time.monotonic()
    assert cluster.run("wait", "8", "--window", "2").one("status")["state"] == "PENDING"
    assert time.monotonic() - started >= 1  # it did wait, look after look
    cluster.job("8", state="RUNNING", node="cn01", reason="None")
    timer = threading.Timer(0.6, write_conn, args=(cluster, "8"))
    timer.start()
    try:
        assert cluster.run("connection", "8").one("connection")["node"]
    finally:
        timer.join()
    assert not calls.exists(), calls.read_text()


def test_wait_queries_at_once_when_the_job_log_appears(cluster: Cluster) -> None:
    cluster.job("7", state="RUNNING", node="cn02", reason="None")
    seen(cluster, "7", "PENDING|Resources||")
    (cluster.base / "jobs/7.log").write_text("")
    started = time.monotonic()
    res = cluster.run("wait", "7", "--window", "20")
    assert time.monotonic() - started < 3
    st = res.one("status")
    assert st["state"] == "RUNNING" and st["node"] == "cn02" and st["waiting"] is False
    assert st["reason"] == ""  # Slurm's "None" is no reason


def test_a_reason_with_spaces_and_an_old_scontrol(cluster: Cluster) -> None:
    cluster.job("12", state="PENDING", reason="ReqNodeNotAvail, UnavailableNodes:cn01")
    assert cluster.run("wait", "12", "--window", "1").one("status")["reason"] == (
        "ReqNodeNotAvail, UnavailableNodes:cn01"
    )
    (cluster.base / "jobs/12.seen").unlink()
    cluster.slurm["old_scontrol"] = True  # a Slurm without scontrol --local: squeue instead
    cluster.save()
    st = cluster.run("wait", "12", "--window", "1").one("status")
    assert st["state"] == "PENDING" and cluster.calls("squeue")


def test_no_start_estimate_is_empty_not_na(cluster: Cluster) -> None:
    cluster.job("8", state="PENDING", reason="Priority", start="N/A")
    res = cluster.run("wait", "8", "--window", "1")
    assert res.one("status")["start"] == ""


def test_a_job_that_ends_before_it_runs_says_why_with_its_log(cluster: Cluster) -> None:
    cluster.job("9", state="FAILED", exit_code="1:0")
    (cluster.base / "jobs/9.log").write_text("nodebook: error: module load x failed\n")
    res = cluster.run("wait", "9", "--window", "5")
    assert res.rc == 6
    assert "module load x failed" in res.one("error")["message"]
    assert res.one("status")["final_state"] == "FAILED"
    assert not (cluster.base / "jobs/9.seen").exists()


def test_pending_limit_gives_up_with_a_fix(cluster: Cluster) -> None:
    cluster.job("10", state="PENDING", reason="Resources")
    t = int(time.time()) - 100
    (cluster.base / "jobs/10.seen").write_text(f"{t}|{t}|PENDING|Resources||\n")
    res = cluster.run("wait", "10", "--window", "5", "--pending-limit", "60")
    assert res.rc == 5
    assert (
        "after 60 s" in res.one("error")["message"]
        and "--pending-limit" in res.one("error")["message"]
    )


def test_scheduler_hiccup_keeps_waiting(cluster: Cluster) -> None:
    cluster.job("11", state="PENDING", reason="Resources")
    cluster.slurm["down"] = True
    cluster.save()
    res = cluster.run("wait", "11", "--window", "1")
    assert res.rc == 0 and res.one("status")["waiting"] is True


# ------------------------------------------------------------------------------- connection


def write_conn(cluster: Cluster, job: str, token: str = "ab" * 32) -> dict[str, Any]:
    d = cluster.base / "jobs" / job
    d.mkdir(mode=0o700)
    info = {"job_id": job, "node": "cn01", "endpoint": "socket", "socket": "/tmp/x.sock",
            "host": None, "port": None, "pid": 1, "base_url": "/", "app": "lab",
            "started": 1, "token": token}  # fmt: skip
    # as the job writes it (a temp file, then a rename): the helper never reads half a file
    (d / "connection.json.tmp").write_text(json.dumps(info) + "\n")
    os.replace(d / "connection.json.tmp", d / "connection.json")
    return info


def test_connection_without_token_for_ansible_and_with_it_for_the_driver(cluster: Cluster) -> None:
    cluster.job("20", state="RUNNING", node="cn01")
    info = write_conn(cluster, "20")
    res = cluster.run("connection", "20")
    conn = res.one("connection")
    assert "token" not in conn and conn["node"] == "cn01" and conn["socket"] == "/tmp/x.sock"
    assert ("ab" * 32) not in json.dumps(res.lines)
    full = cluster.run("connection", "20", "--token", "--timeout", "0").one("connection")
    assert full["token"] == info["token"]


def test_connection_of_a_missing_job_is_not_found(cluster: Cluster) -> None:
    res = cluster.run("connection", "21", "--token", "--timeout", "0")
    assert res.rc == 9 and res.one("error")["error"] == "not-found"


def test_connection_gives_up_when_the_job_leaves(cluster: Cluster) -> None:
    cluster.job("22", state="FAILED")
    (cluster.base / "jobs/22.log").write_text("Traceback: boom\n")
    res = cluster.run("connection", "22", "--timeout", "30", timeout=40)
    assert res.rc == 6 and "boom" in res.one("error")["message"]


# ------------------------------------------------------------------------------- heartbeat, ended


def test_heartbeat_touches_and_says_whether_jupyter_is_up(cluster: Cluster) -> None:
    write_conn(cluster, "30")
    res = cluster.run("heartbeat", "30")
    assert res.one("heartbeat")["alive"] is True
    assert (cluster.base / "jobs/30/heartbeat").exists()
    assert cluster.run("heartbeat", "31").one("heartbeat")["alive"] is False


@pytest.mark.parametrize(
    ("fields", "state", "by", "exit_code"),
    [
        ({"state": "TIMEOUT", "exit_code": "0:15"}, "TIMEOUT", "", "0:15"),
        ({"state": "OUT_OF_MEMORY", "exit_code": "0:125"}, "OUT_OF_MEMORY", "", "0:125"),
        ({"state": "CANCELLED", "by": 0}, "CANCELLED", "root", "0:0"),
        ({"state": "FAILED", "exit_code": "1:0"}, "FAILED", "", "1:0"),
    ],
)
def test_ended_reads_sacct(cluster: Cluster, fields, state, by, exit_code) -> None:
    cluster.job("40", **fields)
    (cluster.base / "jobs/40.log").write_text("line one\n\nline two\n")
    ended = cluster.run("ended", "40").one("ended")
    assert (ended["state"], ended["by"], ended["exit_code"]) == (state, by, exit_code)
    assert ended["source"] == "sacct" and ended["log"] == ["line one", "line two"]


def test_heartbeat_check_asks_the_scheduler_once(cluster: Cluster) -> None:
    cluster.job("32", state="RUNNING", node="cn01")
    assert "state" not in cluster.run("heartbeat", "32").one("heartbeat")
    assert not cluster.calls("scontrol")
    beat = cluster.run("heartbeat", "32", "--check").one("heartbeat")
    assert beat["state"] == "RUNNING" and len(cluster.calls("scontrol")) == 1


def test_ended_tidies_what_a_killed_job_left(cluster: Cluster) -> None:
    """A job killed outright (no trap) leaves its connection file: `ended` removes it."""
    write_conn(cluster, "42")
    cluster.job("42", state="FAILED", exit_code="0:9")
    ended = cluster.run("ended", "42").one("ended")
    assert ended["stale"] is True
    assert not (cluster.base / "jobs/42").exists()
    run_dir = cluster.tmp / "node-tmp/nodebook-tester-42"
    run_dir.mkdir(parents=True)
    (run_dir / "token").write_text("x")
    assert cluster.run("tidy", "42").one("tidied")["removed"] is True
    assert not run_dir.exists()


def test_ended_leaves_a_running_jobs_files_alone(cluster: Cluster) -> None:
    write_conn(cluster, "43")
    cluster.slurm["accounting"] = False
    cluster.job("43", state="RUNNING")
    cluster.save()
    ended = cluster.run("ended", "43", "--settle", "1").one("ended")
    assert ended["stale"] is False and (cluster.base / "jobs/43/connection.json").exists()


@pytest.mark.parametrize(
    ("fields", "log", "cause"),
    [
        ({"state": "FAILED", "exit_code": "75:0"}, "", "heartbeat"),
        ({"state": "COMPLETED"}, "nodebook: no heartbeat for 12 s (timeout 10 s)\n", "heartbeat"),
        (
            {"state": "FAILED", "exit_code": "0:9"},
            "StepId=3.batch exceeded memory limit\n",
            "memory",
        ),
        ({"state": "CANCELLED"}, "", ""),
    ],
)
def test_ended_names_the_cause_the_jobs_log_or_exit_code_tells(cluster, fields, log, cause):
    cluster.job("44", **fields)
    (cluster.base / "jobs/44.log").write_text(log)
    assert cluster.run("ended", "44").one("ended")["cause"] == cause


def test_ended_without_accounting_asks_squeue(cluster: Cluster) -> None:
    cluster.slurm["accounting"] = False
    cluster.save()
    cluster.job("41", state="TIMEOUT")
    ended = cluster.run("ended", "41").one("ended")
    assert ended["state"] == "TIMEOUT" and ended["source"] == "squeue"


# ------------------------------------------------------------------------------- cancel, list


def test_cancel_one_job_and_confirm(cluster: Cluster) -> None:
    cluster.job("50", state="RUNNING", user="tester")
    cluster.job("51", state="RUNNING", user="tester", name="other")
    seen(cluster, "50", "RUNNING|||")
    hop = cluster.tmp / "node-tmp"
    hop.mkdir()
    (hop / "nodebook-tester-50-hop.sock").write_text("")
    res = cluster.run("cancel", "--job", "50")
    assert res.rc == 0 and [s["job_id"] for s in res.kind("stopped")] == ["50"]
    assert cluster.load()["jobs"]["50"]["state"] == "CANCELLED"
    assert cluster.load()["jobs"]["51"]["state"] == "RUNNING"  # not a session: untouched
    assert not (cluster.base / "jobs/50.seen").exists()
    assert not (hop / "nodebook-tester-50-hop.sock").exists()


def test_cancel_by_tag_finds_a_job_whose_id_was_never_seen(cluster: Cluster) -> None:
    cluster.job("52", user="tester", comment="nodebook:t1")
    cluster.job("53", user="tester", comment="nodebook:t2")
    res = cluster.run("cancel", "--tag", "t1")
    assert [s["job_id"] for s in res.kind("stopped")] == ["52"]


def test_cancel_own_scancels_first_then_confirms(cluster: Cluster) -> None:
    cluster.job("54", state="RUNNING", user="tester")
    res = cluster.run("cancel", "--job", "54", "--own")
    assert res.rc == 0 and res.one("stopped")["job_id"] == "54"
    cmds = [c["cmd"] for c in cluster.calls()]
    assert cmds[0] == "scancel" and set(cmds[1:]) == {"squeue"}, cmds  # nothing read first


def test_cancel_own_claims_nothing_for_a_job_that_is_gone(cluster: Cluster) -> None:
    cluster.job("57", state="COMPLETED", user="tester")
    for job in ("57", "99999"):  # ended, and never there (scancel says so, with status 0)
        res = cluster.run("cancel", "--job", job, "--own")
        assert res.rc == 0 and not res.kind("stopped") and res.one("gone")["job_id"] == job


def test_cancel_reports_a_job_already_gone(cluster: Cluster) -> None:
    res = cluster.run("cancel", "--job", "55")
    assert res.rc == 0 and res.one("gone")["job_id"] == "55" and not res.kind("stopped")


def test_cancel_all_and_a_job_that_stays(cluster: Cluster) -> None:
    cluster.job("56", state="RUNNING", user="tester")
    cluster.slurm["cancel_to"] = "COMPLETING"  # never leaves
    cluster.save()
    res = cluster.run("cancel", "--all", "--wait", "2")
    assert res.rc == 5 and "56" in res.one("error")["message"]


def test_list_shows_sessions_only_with_their_gpus(cluster: Cluster) -> None:
    tres = "cpu=1,mem=4G,node=1,billing=1,gres/gpu=2"
    cluster.job("60", state="RUNNING", node="cn01", user="tester", elapsed="1:00", tres=tres)
    cluster.job("61", state="PENDING", reason="Resources", user="tester")
    cluster.job("62", state="RUNNING", user="tester", name="other")
    res = cluster.run("list")
    assert {s["job_id"]: s["state"] for s in res.kind("session")} == {
        "60": "RUNNING",
        "61": "PENDING",
    }
    assert res.one("listed")["count"] == 2
    assert {s["job_id"]: s["gpus"] for s in res.kind("session")} == {"60": "2", "61": ""}


# ------------------------------------------------------------------------------- probes


def test_environment_without_modules_finds_python(cluster: Cluster) -> None:
    res = cluster.run("environment", "--python-command", "python3")
    env = res.one("environment")
    assert env["python"].endswith("python3") and env["version"].count(".") == 2


def test_environment_with_a_missing_module_offers_close_matches(cluster: Cluster) -> None:
    fake_module = (
        'module() { case $1 in -t) printf "%s\\n" "/opt/mf:" "python/3.10" "python/3.12(default)"'
        ' "gcc/12" >&2 ;; is-avail) [ "$2" = python/3.12 ] ;;'
        ' load) [ "$2" = python/3.12 ] ;; esac; }'
    )
    script = f'{fake_module}; export -f module; exec "$0" environment python/3.99'
    proc = subprocess.run(
        ["bash", "-c", script, str(cluster.base / "bin/nodebook-remote")],
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=False,
    )
    assert proc.returncode == 3
    err = json.loads(proc.stdout.splitlines()[-1])
    assert err["error"] == "missing-module" and err["close"] == ["python/3.10", "python/3.12"]


def test_environment_without_a_module_command(cluster: Cluster) -> None:
    res = cluster.run("environment", "python/3.11")
    assert res.rc == 3 and res.one("error")["error"] == "no-module-command"


def test_doctor_before_setup(cluster: Cluster) -> None:
    (cluster.base / "setup.json").unlink()
    res = cluster.run("doctor")
    checks = {c["name"]: c for c in res.kind("check")}
    assert checks["setup"]["ok"] is False and checks["slurm"]["ok"] is True


def test_discover_lists_partitions_and_the_index(cluster: Cluster) -> None:
    res = cluster.run("discover", "--index", "http://127.0.0.1:9/simple/")
    assert res.one("scheduler")["name"] == "slurm"
    parts = {p["name"]: p for p in res.kind("partition")}
    assert parts["debug"]["default"] is True and parts["debug"]["max_time"] == "30:00"
    assert parts["long"]["default_time"] == "1:00:00"
    assert res.one("index")["reachable"] is False


def test_piped_helper_works_before_setup(cluster: Cluster) -> None:
    """`bash -s` as the driver pipes it: no file path, the base from --base."""
    proc = subprocess.run(
        ["bash", "-s", "--", "--base", str(cluster.base), "version"],
        input=HELPER.read_text(),
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=False,
    )
    assert json.loads(proc.stdout)["base"] == str(cluster.base)


def test_messages_with_quotes_and_newlines_stay_json(cluster: Cluster) -> None:
    cluster.slurm["sbatch_error"] = 'bad "quoted"\tvalue \\ here'
    cluster.save()
    res = cluster.run("submit")
    assert '"quoted"' in res.one("error")["message"]


# ------------------------------------------------------------------------------- the job


FAKE_JUPYTER = """#!/usr/bin/env python3
# A stand-in for jupyter-lab: serves /api on the --sock it is given until SIGTERM.
import os, socket, sys, signal
from http.server import BaseHTTPRequestHandler, HTTPServer
sock = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--sock=")][0]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
class S(HTTPServer):
    address_family = socket.AF_UNIX
    def server_bind(self):
        self.socket.bind(self.server_address)
    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("local", 0)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with open(os.environ["FAKE_ARGV"], "w") as f:
    f.write(" ".join(sys.argv) + "\\n" + os.environ["JUPYTER_TOKEN_FILE"])
S(sock, H).serve_forever()
"""


def start_job(cluster: Cluster, job: str, **env: str) -> subprocess.Popen[str]:
    venv_bin = cluster.tmp / "venv-bin"
    venv_bin.mkdir(exist_ok=True)
    lab = venv_bin / "jupyter-lab"
    lab.write_text(FAKE_JUPYTER)
    lab.chmod(0o755)
    (cluster.tmp / "node-tmp").mkdir(exist_ok=True)
    full = cluster.env(SLURM_JOB_ID=job, FAKE_ARGV=str(cluster.tmp / "argv"), **env)
    return subprocess.Popen(
        [str(cluster.base / "bin/nodebook-remote"), "job"],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_job_writes_a_private_connection_file_and_cleans_up_on_sigterm(cluster: Cluster) -> None:
    proc = start_job(cluster, "70")
    conn = cluster.base / "jobs/70/connection.json"
    try:
        wait_for(conn)
        run_dir = cluster.tmp / "node-tmp/nodebook-tester-70"
        assert stat.S_IMODE(conn.stat().st_mode) == 0o600
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        info = json.loads(conn.read_text())
        assert list(info)[-1] == "token" and len(info["token"]) == 64
        assert info["socket"] == str(run_dir / "jupyter.sock")
        argv = (cluster.tmp / "argv").read_text()
        assert info["token"] not in argv  # the token never reaches argv
        # the helper strips the token for Ansible
        assert "token" not in cluster.run("connection", "70").one("connection")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - started < 2
        assert not conn.exists() and not run_dir.exists()
        assert not (cluster.base / "jobs/70").exists()
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "job 70 ended" in out


def test_job_ends_itself_without_heartbeat(cluster: Cluster) -> None:
    proc = start_job(cluster, "71", NODEBOOK_HEARTBEAT_TIMEOUT="2")
    try:
        assert proc.wait(timeout=30) == 75  # DEADMAN_EXIT: Slurm records the job as failed
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "no heartbeat" in out
    assert not (cluster.base / "jobs/71").exists()


def test_job_refuses_a_bad_endpoint(cluster: Cluster) -> None:
    proc = start_job(cluster, "72", NODEBOOK_ENDPOINT="udp")
    assert proc.wait(timeout=10) == 1
    assert "NODEBOOK_ENDPOINT" in proc.communicate()[0]


# ------------------------------------------------------------------------------- kernels
# `kernel` is the launcher in the kernelspecs of roles/nodebook_kernels: Jupyter runs it on the
# node. Here the environment's python is a stand-in that prints its argv and environment for
# `-m ipykernel_launcher` (and is the real Python for anything else), `module` an exported
# bash function that records what it loads, `conda` a script on PATH.

FAKE_ENV_PYTHON = f"""#!/bin/sh
if [ "$1" = -m ]; then
  exec {sys.executable} -c 'import json, os, sys
line = {{"nodebook": "fake-kernel", "argv": sys.argv[1:], "env": dict(os.environ)}}
print(json.dumps(line))' "$@"
fi
exec {sys.executable} "$@"
"""
# Lmod's `module` as the job's login shell exports it; `missing/1` does not load.
FAKE_MODULE = (
    '() { [ "$1" = load ] || return 0; '
    'if [ "$2" = missing/1 ]; then '
    'echo "Lmod has detected the following error: $2" >&2; return 1; fi; '
    'export LOADED="${LOADED:+$LOADED }$2" PATH="/opt/modules/$2/bin:$PATH"; }'
)


def make_env(cluster: Cluster, name: str, kind: str) -> Path:
    """An environment prefix: bin/python (the stand-in); conda-meta/ and an activate.d hook
    (written for `set +u`, as real ones are) for conda, pyvenv.cfg for a venv."""
    prefix = cluster.home / ("conda/envs" if kind == "conda" else "envs") / name
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").write_text(FAKE_ENV_PYTHON)
    (prefix / "bin" / "python").chmod(0o755)
    if kind == "conda":
        (prefix / "conda-meta").mkdir()
        (prefix / "conda-meta" / "state").write_text(
            json.dumps({"env_vars": {"FROM_CONDA_STATE": "a b=c", "1BAD": "x"}})
        )
        hooks = prefix / "etc" / "conda" / "activate.d"
        hooks.mkdir(parents=True)
        (hooks / "marker.sh").write_text(
            'export NBMARKER_ACTIVATED=1 HOOK_SAW_PREFIX="$CONDA_PREFIX$UNSET_IN_HOOK"\n'
        )
    elif kind == "venv":
        (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return prefix


def run_kernel(cluster: Cluster, prefix: Path, kind: str, *extra: str, **env: str) -> Result:
    return cluster.run(
        "kernel",
        "--name",
        prefix.name,
        "--kind",
        kind,
        "--prefix",
        str(prefix),
        "--python",
        str(prefix / "bin" / "python"),
        *extra,
        "--",
        "-f",
        "/run/conn-1.json",
        env=cluster.env(**env),
    )


def test_kernel_activates_a_conda_env_as_conda_activate_does(cluster: Cluster) -> None:
    prefix = make_env(cluster, "torchish", "conda")
    base = "/opt/miniforge"
    path = f"{base}/bin:{cluster.bin}:/usr/bin:/bin"
    res = run_kernel(cluster, prefix, "conda", CONDA_PREFIX=base, CONDA_SHLVL="1", PATH=path)
    assert res.rc == 0, res
    kernel = res.one("fake-kernel")
    assert kernel["argv"] == ["-m", "ipykernel_launcher", "-f", "/run/conn-1.json"]
    env = kernel["env"]
    # The env's bin replaces the active env's (base) on PATH, as `conda activate` does.
    assert env["PATH"].split(":")[0] == f"{prefix}/bin"
    assert f"{base}/bin" not in env["PATH"].split(":")
    assert env["CONDA_PREFIX"] == str(prefix) and env["CONDA_DEFAULT_ENV"] == "torchish"
    assert env["CONDA_SHLVL"] == "2" and env["CONDA_PREFIX_1"] == base
    assert env["CONDA_PROMPT_MODIFIER"] == "(torchish) "
    assert env["FROM_CONDA_STATE"] == "a b=c" and "1BAD" not in env  # `conda env config vars`
    assert env["NBMARKER_ACTIVATED"] == "1"  # etc/conda/activate.d/*.sh, after the variables
    assert env["HOOK_SAW_PREFIX"] == str(prefix)
    assert "kernel torchish on " in res.stderr and "as conda does" in res.stderr


def test_kernel_uses_condas_own_activation_when_conda_exists(cluster: Cluster) -> None:
    prefix = make_env(cluster, "torchish", "conda")
    conda = cluster.bin / "conda"
    conda.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "shell.bash hook" ] || exit 2\n'
        'echo \'conda() { [ "$1" = activate ] || return 1; '
        'export CONDA_PREFIX="$2" ACTIVATED_BY=conda-hook PATH="$2/bin:$PATH"; }\'\n'
    )
    conda.chmod(0o755)
    res = run_kernel(cluster, prefix, "conda")
    env = res.one("fake-kernel")["env"]
    assert env["ACTIVATED_BY"] == "conda-hook" and env["CONDA_PREFIX"] == str(prefix)
    assert "NBMARKER_ACTIVATED" not in env  # conda's activate (here a stand-in) runs the hooks
    assert "(conda activate)" in res.stderr
    # A conda whose activate fails: the launcher activates the env itself, and says so.
    conda.write_text("#!/bin/sh\necho 'conda() { return 1; }'\n")
    res = run_kernel(cluster, prefix, "conda")
    env = res.one("fake-kernel")["env"]
    assert env["NBMARKER_ACTIVATED"] == "1" and env["CONDA_PREFIX"] == str(prefix)
    assert "conda activate" in res.stderr and "failed" in res.stderr


def test_kernel_loads_the_modules_then_activates_a_venv(cluster: Cluster) -> None:
    prefix = make_env(cluster, "analysis", "venv")
    res = run_kernel(
        cluster,
        prefix,
        "venv",
        "--module",
        "cuda/12.4",
        "--module",
        "mpi/4",
        **{"BASH_FUNC_module%%": FAKE_MODULE, "PYTHONHOME": "/wrong"},
    )
    env = res.one("fake-kernel")["env"]
    assert env["LOADED"] == "cuda/12.4 mpi/4"
    # Activated after the modules: the env's bin is first, then what the modules added.
    assert env["PATH"].split(":")[:3] == [
        f"{prefix}/bin",
        "/opt/modules/mpi/4/bin",
        "/opt/modules/cuda/12.4/bin",
    ]
    assert env["VIRTUAL_ENV"] == str(prefix) and "PYTHONHOME" not in env
    assert "CONDA_PREFIX" not in env


def test_kernel_with_a_module_that_does_not_load_fails_with_the_fix(cluster: Cluster) -> None:
    prefix = make_env(cluster, "analysis", "venv")
    res = run_kernel(
        cluster, prefix, "venv", "--module", "missing/1", **{"BASH_FUNC_module%%": FAKE_MODULE}
    )
    assert res.rc == 3 and not res.kind("fake-kernel")
    err = res.one("error")
    assert err["error"] == "missing-module" and err["module"] == "missing/1"
    assert "nodebook_kernels_environments" in err["message"] and "nodebook setup" in err["message"]
    assert "Lmod has detected the following error: missing/1" in res.stderr


def test_kernel_plain_python_and_bad_arguments(cluster: Cluster) -> None:
    prefix = make_env(cluster, "spack-python", "plain")
    env = run_kernel(cluster, prefix, "plain").one("fake-kernel")["env"]
    assert env["PATH"].split(":")[0] == f"{prefix}/bin" and "VIRTUAL_ENV" not in env
    gone = cluster.run(
        "kernel",
        "--kind",
        "venv",
        "--prefix",
        str(prefix),
        "--python",
        "/nope/python",
        "--",
        "-f",
        "x",
    )
    assert gone.rc == 3 and "no Python at /nope/python" in gone.one("error")["message"]
    for bad in (
        ["--kind", "pixi", "--prefix", str(prefix), "--", "-f", "x"],
        ["--kind", "venv", "--prefix", "relative/env", "--", "-f", "x"],
        ["--kind", "venv", "--prefix", str(prefix)],
    ):
        assert cluster.run("kernel", *bad).one("error")["error"] == "usage", bad


# jupyter_client's KernelSpecManager and jupyter_core's data dir, as far as `kernels` uses them:
# the kernels/<name>/kernel.json under each JUPYTER_PATH entry, then the user's data dir, and
# the server's own python3 (sys.prefix) last.
FAKE_JUPYTER_CLIENT = {
    "jupyter_core/__init__.py": "",
    "jupyter_core/paths.py": (
        "import os\n"
        "def jupyter_data_dir():\n"
        "    return os.path.expanduser('~/.local/share/jupyter')\n"
    ),
    "jupyter_client/__init__.py": "",
    "jupyter_client/kernelspec.py": (
        "import json, os, sys\n"
        "from jupyter_core.paths import jupyter_data_dir\n"
        "class KernelSpecManager:\n"
        "    def get_all_specs(self):\n"
        "        dirs = [d for d in os.environ.get('JUPYTER_PATH', '').split(':') if d]\n"
        "        dirs += [jupyter_data_dir(), os.path.join(sys.prefix, 'share', 'jupyter')]\n"
        "        found = {}\n"
        "        for d in dirs:\n"
        "            k = os.path.join(d, 'kernels')\n"
        "            for name in sorted(os.listdir(k)) if os.path.isdir(k) else []:\n"
        "                rd = os.path.join(k, name)\n"
        "                with open(os.path.join(rd, 'kernel.json')) as f:\n"
        "                    found.setdefault(name, {'resource_dir': rd, 'spec': json.load(f)})\n"
        "        found.setdefault('python3', {'resource_dir': os.path.join(sys.prefix, 'share',\n"
        "            'jupyter', 'kernels', 'python3'), 'spec': {'argv': [sys.executable],\n"
        "            'display_name': 'Python 3 (ipykernel)', 'language': 'python'}})\n"
        "        return found\n"
    ),
}


def write_kernelspec(kernels: Path, name: str, spec: dict[str, Any]) -> None:
    (kernels / name).mkdir(parents=True)
    (kernels / name / "kernel.json").write_text(json.dumps(spec))


def test_kernels_lists_what_the_jobs_jupyter_offers(cluster: Cluster) -> None:
    stubs = cluster.tmp / "stubs"
    for rel, text in FAKE_JUPYTER_CLIENT.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    data_dir = cluster.base / "share" / "jupyter"
    cluster.write_setup(data_dir=str(data_dir), default_kernel="torchish")
    ours = {
        "managed_by": "nodebook_kernels",
        "kind": "conda",
        "prefix": "/e/torchish",
        "python": "/e/torchish/bin/python",
        "modules": ["cuda/12.4"],
    }
    write_kernelspec(
        data_dir / "kernels",
        "torchish",
        {
            "argv": ["nodebook-remote", "kernel"],
            "display_name": "Torchish (CUDA 12.4)",
            "language": "python",
            "metadata": {"nodebook": ours},
        },
    )
    write_kernelspec(
        cluster.home / ".local/share/jupyter/kernels",
        "mine",
        {
            "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher"],
            "display_name": "Mine",
            "language": "python",
        },
    )
    res = cluster.run("kernels", env=cluster.env(PYTHONPATH=str(stubs)))
    assert res.rc == 0, res
    kernels = {k["name"]: k for k in res.kind("kernel")}
    assert set(kernels) == {"torchish", "mine", "python3"}
    torchish = kernels["torchish"]
    assert torchish["source"] == "nodebook" and torchish["managed"] and torchish["default"]
    assert torchish["kind"] == "conda" and torchish["prefix"] == "/e/torchish"
    assert torchish["modules"] == ["cuda/12.4"] and torchish["display_name"].startswith("Torch")
    assert kernels["mine"]["source"] == "user" and not kernels["mine"]["managed"]
    assert kernels["mine"]["python"] == "/usr/bin/python3"
    assert kernels["python3"]["source"] == "jupyter" and not kernels["python3"]["default"]
    summary = res.one("kernels")
    assert summary["count"] == 3 and summary["default"] == "torchish" and summary["default_found"]
    assert summary["data_dir"] == str(data_dir)
    # Without a recorded default (an older setup.json), nodebook's own python3 is the default.
    cluster.write_setup(data_dir=str(data_dir))
    res = cluster.run("kernels", env=cluster.env(PYTHONPATH=str(stubs)))
    assert res.one("kernels")["default"] == "python3"
    assert [k["name"] for k in res.kind("kernel") if k["default"]] == ["python3"]


def test_kernels_needs_setup(cluster: Cluster) -> None:
    (cluster.base / "setup.json").unlink()
    assert cluster.run("kernels").one("error")["error"] == "not-set-up"
    assert cluster.run("kernels", "extra").rc == 2


def test_job_puts_nodebooks_data_dir_first_on_jupyter_path(cluster: Cluster) -> None:
    """The kernelspecs of nodebook_kernels are found, and the user's own data dir still is:
    JUPYTER_PATH gets the data dir in front, JUPYTER_DATA_DIR is left alone."""
    data_dir = cluster.base / "share" / "jupyter"
    cluster.write_setup(data_dir=str(data_dir))
    venv_bin = cluster.tmp / "venv-bin"
    venv_bin.mkdir()
    (venv_bin / "jupyter-lab").write_text(
        f"#!{sys.executable}\nimport json, os\n"
        "with open(os.environ['FAKE_ENV_OUT'], 'w') as f:\n    json.dump(dict(os.environ), f)\n"
    )
    (venv_bin / "jupyter-lab").chmod(0o755)
    (cluster.tmp / "node-tmp").mkdir()
    out = cluster.tmp / "jupyter-env.json"
    env = cluster.env(SLURM_JOB_ID="80", FAKE_ENV_OUT=str(out), JUPYTER_PATH="/site/jupyter")
    proc = subprocess.run(
        [str(cluster.base / "bin/nodebook-remote"), "job"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    seen = json.loads(out.read_text())
    assert seen["JUPYTER_PATH"] == f"{data_dir}:/site/jupyter"
    assert "JUPYTER_DATA_DIR" not in seen
    assert "jupyter exited before it answered" in proc.stderr  # the stand-in only looked


def test_jupyter_ending_by_itself_ends_the_job_at_once(cluster: Cluster) -> None:
    """Shut down from its menu: the job ends then, not at its next poll (30 s here)."""
    cluster.write_setup(poll_interval=30)
    proc = start_job(cluster, "73")
    conn = cluster.base / "jobs/73/connection.json"
    try:
        wait_for(conn)
        os.kill(json.loads(conn.read_text())["pid"], signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "jupyter exited with status 0" in out
    assert not conn.exists()


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_the_helper_finds_its_base_from_its_own_path(cluster, tmp_path, how):
    """The base is the directory above the helper's bin/ (not $HOME/.nodebook), whether it is
    called by its absolute path, as the driver does, or as ./nodebook-remote from bin/."""
    alt = tmp_path / "elsewhere"
    alt.symlink_to(cluster.base)
    env = cluster.env(HOME=str(tmp_path / "empty-home"))
    argv = [str(alt / "bin" / "nodebook-remote")] if how == "absolute" else ["./nodebook-remote"]
    proc = subprocess.run(
        [*argv, "paths", "7"],
        capture_output=True,
        text=True,
        env=env,
        cwd=alt / "bin",
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["job_id"] == "7"


def test_a_running_jobs_status_carries_the_login_nodes_records_of_its_key(
    cluster: Cluster,
) -> None:
    """host_keys: what this host's ssh would check for the node (ssh -G: its files, its HostName)
    as ssh-keygen -F finds it there: a FQDN-only site-wide line, a hashed user line, a CA line."""
    key, ca = (
        "AAAAC3NzaC1lZDI1NTE5AAAAIFdZGyM9XOEkwYeIHAUuafn9QTpF2MSDY1VurjznDQFl",
        "AAAAC3NzaC1lZDI1NTE5AAAAIE1TzIfDU1pCqC+qb7QC/9Ll5XRqfaTk6ZGPhPCyoVp/",
    )
    site, mine = cluster.tmp / "ssh_known_hosts", cluster.home / ".ssh" / "known_hosts"
    site.write_text(f"cn02.hpc.example,10.0.0.12 ssh-ed25519 {key}\ncn09 ssh-ed25519 {ca}\n")
    mine.parent.mkdir()
    mine.write_text(f"cn02 ssh-ed25519 {key}\n@cert-authority *.hpc.example ssh-ed25519 {ca}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(mine)], check=True)
    ssh = cluster.bin / "ssh"  # -G only: the config this host's ssh would use for the node
    ssh.write_text(
        f"#!/bin/sh\nprintf 'hostname %s.hpc.example\\nglobalknownhostsfile {site}\\n"
        f'userknownhostsfile {mine} {mine}2\\n\' "$2"\n'
    )
    ssh.chmod(0o755)
    cluster.job("7", state="RUNNING", node="cn02", reason="None")
    records = cluster.run("wait", "7", "--window", "5").one("status")["host_keys"]
    assert f"cn02.hpc.example,10.0.0.12 ssh-ed25519 {key}" in records
    assert f"@cert-authority *.hpc.example ssh-ed25519 {ca}" in records
    assert any(r.startswith("|1|") and r.endswith(key) for r in records)  # hashed, as it is
    assert not any(ca in r and "cn09" in r for r in records)
    cluster.job("8", state="PENDING", reason="Priority")
    assert "host_keys" not in cluster.run("wait", "8", "--window", "0").one("status")
