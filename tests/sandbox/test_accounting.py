"""Accounting for real: slurmdbd with MariaDB, associations, QOS limits and memory enforcement."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.sandbox

UNFINISHED = ("PENDING", "RUNNING")


def sacct(sandbox, job_id: str, user: str = "alice") -> list[dict[str, str]]:
    """sacct's rows for a job (the job, then its steps), as dicts."""
    fields = "JobID,User,Account,QOS,State,ExitCode"
    out = sandbox.host("login", ["sacct", "-n", "-P", "-j", job_id, "-o", fields], user=user)
    names = fields.split(",")
    return [dict(zip(names, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def wait_for_sacct(sandbox, job_id: str, done, timeout: float = 60) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = sacct(sandbox, job_id)
        if rows and done(rows):
            return rows
        assert time.monotonic() < deadline, f"sacct never showed job {job_id} as expected: {rows}"
        time.sleep(0.5)


def submit(sandbox, user: str, options: str, **kw):
    return sandbox.ssh(user, f"sbatch --parsable -o /dev/null {options}", **kw)


def test_daemons_run_on_login(sandbox):
    status = sandbox.cluster("status").stdout
    for name in ("mariadbd", "slurmdbd"):
        assert any(line.split()[:2] == [name, "running"] for line in status.splitlines()), status
    # MariaDB answers on its unix socket only, and the password-less root login is the socket's.
    socket = sandbox.state / "run" / "mariadb" / "mariadb.sock"
    out = sandbox.host("login", ["mariadb", f"--socket={socket}", "-N", "-e", "SHOW DATABASES"])
    assert "slurm_acct_db" in out.stdout.split()
    tcp = sandbox.host("login", ["ss", "-Hltn"]).stdout
    assert ":3306" not in tcp


def test_associations_accounts_and_qos(sandbox):
    out = sandbox.host(
        "login",
        ["sacctmgr", "-n", "-P", "show", "assoc", "format=cluster,account,user,qos,defaultqos"],
    ).stdout
    rows = {tuple(line.split("|")[:3]): line.split("|")[3:] for line in out.splitlines()}
    for account, user in [("physics", "alice"), ("physics", "bob"), ("chemistry", "alice")]:
        qos, default = rows[("sandbox", account, user)]
        assert sorted(qos.split(",")) == ["normal", "short"]
        assert default == "normal"
    assert ("sandbox", "chemistry", "bob") not in rows
    users = sandbox.host(
        "login", ["sacctmgr", "-n", "-P", "show", "user", "format=user,defaultaccount"]
    ).stdout.split()
    assert "alice|physics" in users and "bob|physics" in users
    qos = sandbox.host(
        "login", ["sacctmgr", "-n", "-P", "show", "qos", "format=name,maxwall,flags"]
    ).stdout.split()
    assert "short|00:10:00|DenyOnLimit" in qos


def test_account_without_association_is_refused(sandbox):
    res = submit(sandbox, "bob", "--account chemistry --wrap true", check=False)
    assert res.returncode == 1
    assert "Invalid account or account/partition combination specified" in res.stderr


def test_qos_wall_limit_is_refused_at_submit(sandbox):
    res = submit(sandbox, "alice", "--qos short --time 00:20:00 --wrap true", check=False)
    assert res.returncode == 1
    assert "QOSMaxWallDurationPerJobLimit" in res.stderr
    assert "Job violates accounting/QOS policy" in res.stderr


def test_finished_jobs_are_in_sacct(sandbox):
    """A job's record is complete within seconds of its end (slurmctld sends it asynchronously:
    for about a second sacct can show the job PENDING with its batch step RUNNING, or its QOS
    as Unknown)."""
    ok = submit(sandbox, "alice", "--qos short --time 00:05:00 --wrap true").stdout.strip()
    failed = submit(sandbox, "alice", "--account chemistry --wrap 'exit 3'").stdout.strip()
    expected = {"User": "alice", "Account": "physics", "QOS": "short", "State": "COMPLETED",
                "ExitCode": "0:0"}  # fmt: skip
    rows = wait_for_sacct(sandbox, ok, lambda r: r[0] == {"JobID": ok, **expected})
    assert rows[0]["JobID"] == ok
    expected.update(Account="chemistry", QOS="normal", State="FAILED", ExitCode="3:0")
    wait_for_sacct(sandbox, failed, lambda r: r[0] == {"JobID": failed, **expected})


def test_over_memory_job_is_killed(sandbox):
    """OverMemoryKill without cgroups: Slurm 22.05 kills the step and the job ends FAILED 0:9.

    (OUT_OF_MEMORY needs task/cgroup's OOM events; the sandbox has no cgroups.)
    """
    name = f"sandbox-oom-{time.monotonic_ns()}"
    script = (
        "import time\n"
        "hog = []\n"
        "for _ in range(40):\n"
        "    hog.append(b'x' * (50 << 20))\n"  # 50 MiB more, touched, every 0.2 s
        "    time.sleep(0.2)\n"
        "print('survived')\n"
    )
    sandbox.ssh("alice", f"cat > ~/{name}.py", input=script)
    try:
        job = sandbox.ssh(
            "alice", f"sbatch --parsable --mem=200M -o ~/{name}.out --wrap 'python3 ~/{name}.py'"
        ).stdout.strip()
        rows = wait_for_sacct(
            sandbox, job, lambda r: len(r) > 1 and all(x["State"] not in UNFINISHED for x in r)
        )
        assert (rows[0]["State"], rows[0]["ExitCode"]) == ("FAILED", "0:9")
        batch = next(r for r in rows if r["JobID"] == f"{job}.batch")
        assert batch["State"].startswith("CANCELLED")
        out = sandbox.ssh("alice", f"cat ~/{name}.out").stdout
        assert f"StepId={job}.batch exceeded memory limit" in out
        assert "Exceeded job memory limit" in out
        assert "survived" not in out
    finally:
        sandbox.ssh("alice", f"rm -f ~/{name}.py ~/{name}.out", check=False)


@pytest.mark.parametrize("daemon", ["mariadbd", "slurmdbd"])
def test_restarts_keep_accounting(sandbox, daemon):
    sandbox.cluster("daemon", daemon, "restart")
    job = submit(sandbox, "bob", "--wrap true").stdout.strip()
    rows = wait_for_sacct(sandbox, job, lambda r: r[0]["State"] == "COMPLETED")
    assert rows[0]["User"] == "bob" and rows[0]["Account"] == "physics"
