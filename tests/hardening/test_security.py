"""Security audit of a driver session (what tests/roles and tests/e2e do not already cover).

Already covered elsewhere: setup's password in argv/runner artifacts/files (tests/roles
test_secret_audit), ~/.nodebook file modes after setup and a raw job's connection.json/log modes
(tests/roles), bob's curl to alice's socket failing and bob's 403 over via-login (tests/e2e).

Here, for sessions started by the driver: the password and the per-job token never show in any
process argv on any host (sampled every ~50 ms; the sandbox's hosts share one pid namespace, so
one `ps -eo args` sees the laptop, login and the nodes), nor in the driver's ansible-runner
private_data_dir while it exists (snapshotted), which is gone afterwards, nor in logs, job output
or files others can read; the driver's and the job's files and directories are 0600/0700; host
keys are checked on both hops (a wrong login key fails with the ssh exit code, nothing
submitted; a node key that differs from the login node's records is
tests/e2e/test_node_host_keys.py's); bob gets EACCES on alice's socket and 403 from her TCP
endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.conftest import inventory_with_config, ssh_config_variant
from tests.harness import leftovers
from tests.harness.driver import DriverProcess
from tests.harness.sandbox import KNOWN_HOSTS, STATE, Sandbox
from tests.harness.setup import user_password

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

SESSION = ["session", "--no-browser", "--allow-second", "--check-interval", "1"]


class Sampler:
    """Samples every process's argv and the driver's runner dirs every ~50 ms in a thread."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.argv: set[str] = set()
        self.samples = 0
        self.runner_files: dict[str, bytes] = {}
        self.runner_modes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ps = subprocess.run(
                ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=False
            )
            self.argv.update(ps.stdout.splitlines())
            self.samples += 1
            tmp = self.tmp
            for d in tmp.glob("nodebook-runner-*") if tmp.exists() else []:
                with contextlib.suppress(OSError):
                    self.runner_modes[str(d)] = stat.S_IMODE(d.stat().st_mode)
                    for f in d.rglob("*"):
                        with contextlib.suppress(OSError):
                            if f.is_file():
                                self.runner_files[str(f)] = f.read_bytes()
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _token(ready: dict[str, object]) -> str:
    url = str(ready["data"]["url"])  # type: ignore[index]
    match = re.search(r"token=([0-9a-f]{32,})", url)
    assert match, f"no token in the ready URL {url!r}"
    return match.group(1)


def _mode(sandbox: Sandbox, host: str, path: str, job: str | None = None) -> tuple[int, str]:
    """(mode, owner) of a path as a sandbox host sees it (nodes have their own /tmp), or, with
    ``job``, as the job sees it (its private /tmp)."""
    argv = ["stat", "-c", "%a %U", path]
    out = (
        leftovers.in_job(sandbox, job, argv, check=False)
        if job
        else sandbox.host(host, argv, check=False)
    )
    assert out.returncode == 0, f"{host}:{path}: {out.stderr}"
    mode, owner = out.stdout.split()
    return int(mode, 8), owner


def _files_with(sandbox: Sandbox, secret: str, since: float | None = None) -> list[str]:
    """`host:path` of files holding `secret` in the places a session writes or logs to
    (with ``since``: only files changed since then, i.e. not files that predate the session)."""
    hits: list[str] = []
    local = ["/home/alice", "/home/bob", "/root/.ansible", "/tmp", "/var/tmp", str(STATE / "log")]
    local.append(str(STATE / "slurm"))  # the jobs' private /tmp (job_container/tmpfs)
    # pytest-of-*: other tests' own inputs (0600 vars files for setup), not the product's files.
    # The secret goes to grep on stdin (-f -): never in an argv of ours either.
    grep = ["grep", "-rlsF", "--exclude-dir=venv", "--exclude-dir=pytest-of-*", "-f", "-"]
    out = subprocess.run(
        [*grep, *local], input=secret + "\n", capture_output=True, text=True, check=False
    )
    hits += [f"laptop:{p}" for p in out.stdout.split()]
    for host in ("login", "cn01", "cn02"):  # their own /tmp
        out = sandbox.host(host, [*grep, "/tmp", "/var/tmp"], input=secret + "\n", check=False)
        hits += [f"{host}:{p}" for p in out.stdout.split()]
    if since is not None:
        hits = [h for h in hits if _mtime(sandbox, h) >= since]
    return hits


def _mtime(sandbox: Sandbox, hit: str) -> float:
    host, _, path = hit.partition(":")
    if host == "laptop":
        return os.stat(path).st_mtime
    return float(sandbox.host(host, ["stat", "-c", "%Y", path]).stdout.strip() or 0)


def _others_can_read(sandbox: Sandbox, hit: str) -> bool:
    host, _, path = hit.partition(":")
    if host == "laptop":
        mode = stat.S_IMODE(os.stat(path).st_mode)
    else:
        mode, _owner = _mode(sandbox, host, path)
    return bool(mode & 0o044)


@contextlib.contextmanager
def driver(sandbox: Sandbox, args: list[str]) -> Iterator[DriverProcess]:
    d = DriverProcess(args)
    try:
        yield d
    finally:
        leftovers.tidy(sandbox, [d])


def nothing_left(sandbox: Sandbox, d: DriverProcess, timeout: float = 60) -> dict:
    return leftovers.wait_clean(sandbox, leftovers.scope_of([d]), timeout)


def test_session_secrets_and_modes(sandbox: Sandbox, nodebook_setup: object) -> None:
    nodebook_setup("alice")  # type: ignore[operator]
    password = user_password("alice")
    started = time.time() - 1  # (whole seconds on the cluster's side)
    # (the socket asked for: --allow-second alone picks loopback TCP when another session runs)
    with driver(sandbox, [*SESSION, "--endpoint", "socket"]) as d, Sampler(d.tmp) as sampler:
        ready = d.wait_event("ready", timeout=180)
        token = _token(ready)
        job, node = str(ready["job_id"]), str(ready["node"])
        paths = leftovers.job_paths(sandbox, "alice", job)
        run_dir, jobs = paths["runtime_dir"], paths["job_dir"]

        # modes while the session runs: laptop side
        state = d.state
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        records = [p for p in state.rglob("*") if p.is_file()]
        assert records, "the session left no local record while running"
        controls = list(d.tmp.glob("nb-*"))
        assert controls and all(stat.S_IMODE(c.stat().st_mode) == 0o700 for c in controls)
        for p in [state, *state.rglob("*")]:
            if p.is_symlink():  # the stop link: to the driver's socket in its 0700 control dir
                assert p.name == f"{job}.stop", p
                assert p.resolve().parent in [c.resolve() for c in controls], p
                continue
            want = 0o700 if p.is_dir() else 0o600
            assert stat.S_IMODE(p.stat().st_mode) == want, p
            assert token.encode() not in (p.read_bytes() if p.is_file() else b"")
        # cluster side: the job's dir and connection file, the node-local runtime dir, socket
        assert _mode(sandbox, "login", jobs) == (0o700, "alice")
        assert _mode(sandbox, "login", paths["connection"]) == (0o600, "alice")
        assert _mode(sandbox, "login", paths["log"])[0] == 0o600
        # (seen from inside the job: its private /tmp, job_container/tmpfs)
        assert _mode(sandbox, node, run_dir, job) == (0o700, "alice")
        assert _mode(sandbox, node, paths["token"], job) == (0o600, "alice")
        assert _mode(sandbox, node, paths["socket"], job)[0] & 0o077 == 0

        # bob: EACCES on alice's socket (the 0700 dir), not merely "no answer"
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(e.errno)\n"
            "else:\n    print('connected')\n"
        )
        out = leftovers.in_job(sandbox, job, ["python3", "-c", probe, paths["socket"]], "bob")
        assert out.stdout.strip() == "13", f"bob's connect: {out.stdout} {out.stderr}"
        # and the node's own /tmp does not even show it
        assert sandbox.host(node, ["test", "-e", run_dir], check=False).returncode == 1

        # files holding the token while it is live: only 0600 ones, nobody else can read them
        hits = _files_with(sandbox, token)
        assert any(h.endswith(f"{job}/connection.json") for h in hits), hits  # the probe works
        readable = [h for h in hits if _others_can_read(sandbox, h)]
        assert readable == [], f"token in files others can read: {readable}"

        d.signal(signal.SIGINT)
        assert d.wait() == 130, d.output[-2000:]
    # (the sampler stopped with the driver)
    assert sampler.samples > 20
    leaks = [a for a in sampler.argv if token in a or password in a]
    assert leaks == [], f"secret in a process argv: {leaks}"
    # every ssh this run started (master, Ansible's, tunnel) checks host keys
    ours = [a for a in sampler.argv if str(d.tmp) in a and a.startswith("ssh ")]
    assert any("ControlMaster=yes" in a for a in ours), "the sampler never saw the master"
    unchecked = [a for a in ours if "stricthostkeychecking=no" in a.lower()]
    assert unchecked == [], f"ssh without host key checking: {unchecked[:2]}"
    assert any("jupyter" in a for a in sampler.argv), "the sampler never saw Jupyter run"
    assert sampler.runner_files, "never saw the driver's private_data_dir"
    assert all(m == 0o700 for m in sampler.runner_modes.values()), sampler.runner_modes
    runner_leaks = [f for f, b in sampler.runner_files.items() if token.encode() in b]
    runner_leaks += [f for f, b in sampler.runner_files.items() if password.encode() in b]
    assert runner_leaks == [], f"secret in ansible-runner artifacts: {runner_leaks}"

    # afterwards: nothing left, no runner dir, the secrets in no file, no log, no job output
    assert nothing_left(sandbox, d) == {}
    assert not list(d.tmp.glob("nodebook-runner-*"))
    job_log = Path(paths["log"]).read_text()
    assert "jupyter answers" in job_log and token not in job_log and password not in job_log
    assert _files_with(sandbox, token) == []
    # the password is the tests' fixed one: files from before this session (other tests' and
    # people's inputs) are not the session's
    assert _files_with(sandbox, password, since=started) == []
    printed = [e for e in d.events if e.get("event") != "ready"]
    assert token not in json.dumps(printed) + d.stderr


def _known_hosts_with_wrong_keys(tmp: Path, hosts: tuple[str, ...]) -> Path:
    """A copy of the sandbox's (laptop's) known_hosts where `hosts` have a different key."""
    key = tmp / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fake = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    lines = []
    changed = 0
    for line in KNOWN_HOSTS.read_text().splitlines():
        names = line.split()[0].split(",") if line.strip() else []
        if any(h in names for h in hosts):
            line = f"{line.split()[0]} {fake}"
            changed += 1
        lines.append(line)
    assert changed == len(hosts), f"known_hosts has no line for one of {hosts}"
    path = tmp / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def _args_with_known_hosts(tmp: Path, known: Path) -> list[str]:
    old = f"UserKnownHostsFile {KNOWN_HOSTS}"
    config = ssh_config_variant(tmp, lambda t: t.replace(old, f"UserKnownHostsFile {known}"))
    return ["-i", str(inventory_with_config(tmp, config))]


def test_wrong_login_host_key_fails_before_anything_is_submitted(
    sandbox: Sandbox, nodebook_setup: object, tmp_path: Path
) -> None:
    nodebook_setup("alice")  # type: ignore[operator]
    known = _known_hosts_with_wrong_keys(tmp_path, ("login",))
    before = known.read_bytes()
    with driver(sandbox, [*SESSION, *_args_with_known_hosts(tmp_path, known)]) as d:
        rc = d.wait(timeout=120)
        assert rc == 4, d.output
        assert re.search(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification", d.output)
        assert "never turn host key checking off" in d.output
        assert not d.job_ids and not [e for e in d.events if e.get("event") == "submitted"]
        assert known.read_bytes() == before  # ssh did not "fix" the known_hosts
        assert nothing_left(sandbox, d, timeout=20) == {}


def test_bob_gets_403_from_alices_tcp_endpoint(sandbox: Sandbox, nodebook_setup: object) -> None:
    nodebook_setup("alice")  # type: ignore[operator]
    nodebook_setup("bob")  # type: ignore[operator]
    with driver(sandbox, [*SESSION, "--endpoint", "tcp"]) as d:
        ready = d.wait_event("ready", timeout=180)
        job, node, token = str(ready["job_id"]), str(ready["node"]), _token(ready)
        conn_file = leftovers.job_paths(sandbox, "alice", job)["connection"]
        conn = json.loads(Path(conn_file).read_text())
        assert conn["endpoint"] == "tcp" and conn["port"]
        url = f"http://127.0.0.1:{conn['port']}/api/status"
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
        as_bob = sandbox.host(node, [*curl, url], user="bob", check=False)
        assert as_bob.stdout == "403", as_bob
        forged = ["-H", "Authorization: token " + "0" * 64]
        assert sandbox.host(node, [*curl, *forged, url], user="bob", check=False).stdout == "403"
        # the same request with alice's token is 200: the 403 is auth, not a dead port
        cfg = node_curl_config(token)
        with_token = sandbox.host(node, [*curl, "-K", cfg, url], user="bob", check=False)
        Path(cfg).unlink(missing_ok=True)
        assert with_token.stdout == "200", with_token
        d.signal(signal.SIGINT)
        assert d.wait() == 130
        assert nothing_left(sandbox, d) == {}


def node_curl_config(token: str) -> str:
    """A curl config (0600, bob's, in his home, removed after use) with the token: never in argv."""
    path = Path(f"/home/bob/.nodebook-hardening-curl-{os.getpid()}")
    path.write_text(f'header = "Authorization: token {token}"\n')
    os.chmod(path, 0o600)
    st = Path("/home/bob").stat()
    os.chown(path, st.st_uid, st.st_gid)
    return str(path)
