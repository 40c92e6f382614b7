"""Fixtures for the driver's e2e tests: drivers in the laptop namespace, and what they left.

Every test gets `drive`, a factory of DriverProcesses (tests/harness/driver.py) sharing the
test's private TMPDIR and state dir, whose finalizer kills what the test started and cancels
the jobs its drivers reported, so nothing is left running even when a test fails; and
`nothing_left`, the leftover check (tests/harness/leftovers.py) scoped to that TMPDIR.

Other engineers' tests and benchmarks use the same sandbox and users at the same time, so every
check is scoped to what this test created: its job ids, the processes tagged with them, and the
processes carrying this test's private TMPDIR.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.harness import leftovers
from tests.harness.driver import DriverProcess
from tests.harness.sandbox import Sandbox


def http_status(
    sandbox: Sandbox, port: int, token: str | None, path: str = "/api/status", method: str = "GET"
) -> int:
    """HTTP status of a request through the tunnel, made from the laptop namespace."""
    header = ["-H", f"Authorization: token {token}"] if token else []
    header += ["-X", method] if method != "GET" else []
    out = sandbox.laptop(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *header,
         f"http://127.0.0.1:{port}{path}"],
        check=False,
    )  # fmt: skip
    return int(out.stdout or 0)


def token_of(ready: dict) -> str:
    return str(ready["url"]).split("token=", 1)[1]


def job_environment(job_id: str) -> dict[str, str]:
    """The environment of the job's own process (`nodebook-remote job`, exec'd by the batch
    script once it has loaded the login shell and the modules)."""
    for line in leftovers.job_processes([job_id]):
        pid, _, args = line.partition(" ")
        if args.endswith("nodebook-remote job"):
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/environ").read_bytes()
                return dict(
                    kv.decode(errors="replace").partition("=")[::2] for kv in raw.split(b"\0") if kv
                )
    raise AssertionError(f"no `nodebook-remote job` process of job {job_id} found")


@pytest.fixture
def test_tmp() -> Iterator[Path]:
    """A short private TMPDIR for this test's drivers (their ssh control sockets live there)."""
    tmp = Path(tempfile.mkdtemp(prefix="nbt-", dir="/tmp"))
    yield tmp
    leftovers.kill_local(leftovers.Scope(tmp_dirs=[tmp]))
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def drive(
    sandbox: Sandbox, nodebook_setup, test_tmp: Path, state_dir: Path
) -> Iterator[Callable[..., DriverProcess]]:
    """Factory: drive(args) starts the driver; the finalizer leaves nothing of it running."""
    nodebook_setup("alice")
    started: list[DriverProcess] = []

    def start(args: list[str], check_interval: str = "1", **kw) -> DriverProcess:
        extra = (
            ["--no-browser", "--check-interval", check_interval]
            if args[0] in ("session", "attach")
            else []
        )
        d = DriverProcess(
            [*args, *extra], work=test_tmp, tmp_dir=test_tmp, state_dir=state_dir, **kw
        )
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()
    leftovers.cancel(sandbox, set().union(*(d.job_ids for d in started)) if started else set())


@pytest.fixture
def nothing_left(sandbox: Sandbox, test_tmp: Path, state_dir: Path) -> Callable[..., None]:
    """nothing_left(job_id, port): what this test's drivers left is gone within `timeout`."""

    def check(
        job_id: str | None = None,
        port: int | None = None,
        *,
        user: str = "alice",
        base: str = leftovers.DEFAULT_BASE,
        timeout: float = 20,
        ignore_pids: Iterable[int] = (),
        ignore_files: Iterable[str] = (),
        files: bool = True,
    ) -> None:
        scope = leftovers.Scope(
            user=user,
            job_ids={job_id} if job_id else set(),
            base=base,
            tmp_dirs=[test_tmp],
            state_dirs=[state_dir],
            ports=[port] if port else [],
            ignore_pids=set(ignore_pids),
            ignore_files=set(ignore_files),
        )
        leftovers.assert_clean(sandbox, scope, timeout, files=files)

    return check
