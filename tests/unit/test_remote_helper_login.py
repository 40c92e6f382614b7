"""The remote helper's login-node commands (lib/nodebook-remote/login.sh, over the scheduler
adapter scheduler.sh): submit, wait, connection, heartbeat, ended, cancel, list, kernels, and the
login node's records of a node's host key. No sandbox: a fake Slurm (tests/unit/helper_cluster.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helper_cluster import Cluster

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
    # sessions submitted at once do not see each other: --allow-second alone says it may share
    alone = cluster.run("submit", "--allow-second").one("submitted")
    assert alone["endpoint"] == "tcp"
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
    settle = cluster.run("ended", "40", "--settle", "1s")
    assert settle.rc == 2 and "--settle takes seconds" in settle.one("error")["message"]


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


def queued_connection(cluster: Cluster, job: str) -> subprocess.Popen[str]:
    """The session's connection call, made as the job is submitted."""
    argv = [str(cluster.base / "bin" / "nodebook-remote"), "connection", job, "--token", "--queued"]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env(),
        cwd=cluster.home,
    )  # fmt: skip


def test_a_queued_connection_waits_without_asking_slurm_then_says_the_start_first(
    cluster: Cluster,
) -> None:
    """While the job waits, no scheduler query (the session's wait watches the queue): only
    empty lines. Once it starts (its job dir appears), one query, its state (the node), then
    where Jupyter answers."""
    cluster.job("40", state="PENDING", reason="Resources")
    proc = queued_connection(cluster, "40")
    try:
        time.sleep(1.2)
        assert cluster.calls() == []  # 24 looks at the file system, no query
        cluster.job("40", state="RUNNING", node="cn01")
        info = write_conn(cluster, "40")
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith("\n")  # the empty lines of the wait
    lines = [json.loads(x) for x in out.splitlines() if x]
    assert [x["nodebook"] for x in lines] == ["status", "connection"], lines
    assert (lines[0]["state"], lines[0]["node"], lines[0]["waiting"]) == ("RUNNING", "cn01", False)
    assert lines[1]["token"] == info["token"] and lines[1]["node"] == "cn01"
    assert len(cluster.calls()) == 1  # the one query at the start


def test_a_queued_connection_ends_when_its_session_has_gone(cluster: Cluster) -> None:
    """The session ends (its ssh closes) while the job still waits: the helper's next empty
    line fails, and it ends instead of waiting on the login node for a job nobody waits for."""
    cluster.job("41", state="PENDING", reason="Priority")
    proc = queued_connection(cluster, "41")
    try:
        time.sleep(0.3)
        assert proc.stdout is not None
        proc.stdout.close()
        proc.wait(timeout=5)  # within a second: one write every WRITE_EVERY naps
    finally:
        proc.kill()
    assert cluster.calls() == []


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


def test_cancel_own_of_a_scancel_that_failed_is_not_a_job_gone(cluster: Cluster) -> None:
    """scancel complains both of a job that is gone and of a controller that did not answer:
    the queue decides. Still listed: scancel once more, and confirm it left."""
    cluster.job("58", state="RUNNING", user="tester")
    cluster.slurm["scancel_fails"] = 1
    cluster.save()
    res = cluster.run("cancel", "--job", "58", "--own")
    assert res.rc == 0 and res.one("stopped")["job_id"] == "58" and not res.kind("gone")
    assert cluster.load()["jobs"]["58"]["state"] == "CANCELLED"
    assert len(cluster.calls("scancel")) == 2


def test_cancel_own_with_the_controller_down_claims_nothing(cluster: Cluster) -> None:
    """Neither scancel nor squeue answers: an error naming the job, never "gone" or "stopped"
    (the driver then falls back to cleanup.yml and says what it could not do)."""
    cluster.job("59", state="RUNNING", user="tester")
    cluster.slurm["down"] = True
    cluster.save()
    res = cluster.run("cancel", "--job", "59", "--own", "--wait", "1")
    assert res.rc == 5 and not res.kind("gone") and not res.kind("stopped")
    assert res.one("error")["message"] == (
        "job 59 was not cancelled: Slurm does not answer on vm: scancel: error: Unable to "
        "contact slurm controller (connect failure)"
    )
    # at once: squeue would not reach it either (Slurm retries each connect for seconds)
    assert [c["cmd"] for c in cluster.calls()] == ["scancel"]


def test_cancel_own_of_a_controller_that_stops_answering_after_the_scancel(
    cluster: Cluster,
) -> None:
    """scancel timed out, then squeue cannot answer: the job is named "not seen leaving"."""
    cluster.job("64", state="RUNNING", user="tester")
    cluster.slurm["scancel_fails"] = 1
    cluster.save()
    (cluster.bin / "squeue").unlink()
    (cluster.bin / "squeue").write_text(
        "#!/bin/sh\necho 'squeue: error: Socket timed out' >&2\nexit 1\n"
    )
    (cluster.bin / "squeue").chmod(0o755)
    res = cluster.run("cancel", "--job", "64", "--own", "--wait", "1")
    assert res.rc == 5 and not res.kind("gone") and not res.kind("stopped")
    assert "64 (squeue did not answer)" in res.one("error")["message"]


def test_cancel_by_id_with_the_controller_down_says_so(cluster: Cluster) -> None:
    """cleanup.yml's cancel (by id, tag or --all) reads the user's jobs first: a squeue that
    fails is an error, not an empty queue ("no job left to cancel")."""
    cluster.job("60", state="RUNNING", user="tester")
    cluster.slurm["down"] = True
    cluster.save()
    res = cluster.run("cancel", "--job", "60")
    assert res.rc == 5 and not res.kind("gone") and not res.kind("stopped")
    assert "Slurm does not answer" in res.one("error")["message"]


def test_a_slurm_that_warns_on_stderr_is_read_by_its_output_alone(cluster: Cluster) -> None:
    """squeue's warnings are not job ids: a cancel confirms the job left (not "not seen
    leaving"), `list` lists the sessions alone, and the wait reads the job's state."""
    cluster.job("61", state="RUNNING", node="cn01", user="tester")
    cluster.job("62", state="RUNNING", node="cn02", user="tester")
    cluster.job("63", state="PENDING", reason="Priority", user="tester")
    cluster.slurm["warn"] = "TopologyParam=RouteTree is deprecated"
    cluster.save()
    res = cluster.run("list")
    assert sorted(s["job_id"] for s in res.kind("session")) == ["61", "62", "63"]
    assert res.one("listed")["count"] == 3
    res = cluster.run("cancel", "--job", "61", "--own")
    assert res.rc == 0 and res.one("stopped")["job_id"] == "61" and not res.kind("error")
    res = cluster.run("cancel", "--job", "62")
    assert res.rc == 0 and res.one("stopped")["job_id"] == "62" and not res.kind("error")
    assert "warning" not in res.stderr
    for old in (False, True):  # scontrol's answer, and squeue's where --local is refused
        cluster.slurm = {**cluster.load(), "old_scontrol": old}
        cluster.save()
        st = cluster.run("wait", "63", "--window", "1").one("status")
        assert (st["state"], st["reason"]) == ("PENDING", "Priority"), st
        (cluster.base / "jobs/63.seen").unlink()


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
