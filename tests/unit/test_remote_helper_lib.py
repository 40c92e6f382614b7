"""The remote helper's entry point and library (roles/nodebook_remote/files: bin/nodebook-remote,
lib/nodebook-remote/common.sh and the layout): the protocol, setup.json, its base, JSON output,
loading its parts, piped in as one script before setup, and the scheduler adapter being the one
place of the scheduler's commands. No sandbox: tests/unit/helper_cluster.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from driver.paths import HELPER, HELPER_PARTS, helper_protocol, helper_script
from tests.unit.helper_cluster import Cluster

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


def test_files_lists_the_installed_helper_with_modes_and_checksums(cluster: Cluster) -> None:
    """What setup's re-run compares (roles/nodebook_remote/tasks/configure.yml): "MODE PATH" for
    each directory, "MODE PATH SHA256" for each file, without setup.json."""
    (cluster.base / "setup.json").unlink()
    entries = cluster.run("files").one("files")["entries"]
    for d in ("", "/bin", "/lib", "/lib/nodebook-remote"):
        mode = f"{cluster.base.joinpath(d.lstrip('/')).lstat().st_mode & 0o777:o}"
        assert f"{mode} {cluster.base}{d}" in entries
    for part in sorted(HELPER_PARTS.glob("*.sh")):
        path = cluster.base / "lib" / "nodebook-remote" / part.name
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        assert f"{path.stat().st_mode & 0o777:o} {path} {digest}" in entries
    helper = cluster.base / "bin" / "nodebook-remote"
    assert any(e.startswith(f"{helper.lstat().st_mode & 0o777:o} {helper} ") for e in entries)
    assert any(e.endswith(hashlib.sha256(HELPER.read_bytes()).hexdigest()) for e in entries)


def piped(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The helper as the driver pipes it before setup: one script on `bash -s`'s stdin."""
    return subprocess.run(
        ["bash", "-s", "--", "--base", str(cluster.base), *args],
        input=helper_script(),
        capture_output=True,
        text=True,
        env=cluster.env(),
        cwd=cluster.home,
        check=False,
    )


def test_piped_helper_works_before_setup(cluster: Cluster) -> None:
    """No file path, the base from --base; the parts come in the same script, so a probe (from
    probes.sh, over the scheduler adapter) runs where nothing is installed."""
    (cluster.base / "setup.json").unlink()
    (cluster.base / "lib" / "nodebook-remote").unlink()
    (cluster.base / "bin" / "nodebook-remote").unlink()
    assert json.loads(piped(cluster, "version").stdout)["base"] == str(cluster.base)
    proc = piped(cluster, "doctor")
    checks = {c["name"]: c for c in map(json.loads, proc.stdout.splitlines())}
    assert checks["setup"]["ok"] is False and checks["slurm"]["ok"] is True, proc.stderr


def test_the_piped_script_is_every_part_then_the_entry_point() -> None:
    script = helper_script()
    assert script.endswith(HELPER.read_text())
    for part in sorted(HELPER_PARTS.glob("*.sh")):
        assert part.read_text() in script
    names = {p.stem for p in HELPER_PARTS.glob("*.sh")}
    assert names == {"common", "scheduler", "login", "node", "probes"}
    # Each part says it is loaded, so the entry point does not source it again.
    for name in names:
        assert f"nb_part_{name}() {{ :; }}" in (HELPER_PARTS / f"{name}.sh").read_text()


def test_a_missing_part_is_a_setup_error_and_others_still_work(cluster: Cluster) -> None:
    """An install that lost a part (or an older one) says so, as JSON, for the commands that
    need it; the entry point loads only the parts a command needs."""
    lib = cluster.base / "lib" / "nodebook-remote"
    lib.unlink()
    lib.mkdir()
    for part in HELPER_PARTS.glob("*.sh"):
        if part.name != "login.sh":
            (lib / part.name).symlink_to(part)
    res = cluster.run("list")
    assert res.rc == 3 and res.one("error")["error"] == "not-set-up"
    assert (
        "login.sh" in res.one("error")["message"]
        and "nodebook setup" in res.one("error")["message"]
    )
    assert not cluster.calls("squeue")
    assert cluster.run("version").rc == 0
    doctor = cluster.run("doctor")
    assert doctor.rc == 0 and {c["name"] for c in doctor.kind("check")} >= {"setup", "slurm"}


# Slurm's commands, as a command word (not in messages or comments).
SLURM = re.compile(
    r"(^|[\s;|&(])(sbatch|squeue|scontrol|scancel|sacct|sacctmgr|sinfo|srun|sstat)\s"
)


def slurm_calls(path: Path) -> list[str]:
    found = []
    for line in path.read_text().splitlines():
        code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.split(" #", 1)[0])
        if not code.lstrip().startswith("#") and SLURM.search(code):
            found.append(line.strip())
    return found


def test_the_scheduler_adapter_is_the_one_place_of_slurms_commands() -> None:
    """A second scheduler is a second adapter: no other part calls Slurm itself."""
    adapter = HELPER_PARTS / "scheduler.sh"
    assert len(slurm_calls(adapter)) >= 10  # the check finds what it looks for
    for part in [HELPER, *HELPER_PARTS.glob("*.sh")]:
        if part != adapter:
            assert slurm_calls(part) == [], part.name


def test_only_the_adapter_decides_by_the_scheduler() -> None:
    """The commands ask the adapter (sched_queue, sched_private_tmp), never test $SCHEDULER: a
    second scheduler adds functions to scheduler.sh and changes no command."""
    decides = re.compile(r'"\$SCHEDULER" *!?= ')
    adapter = HELPER_PARTS / "scheduler.sh"
    assert decides.search(adapter.read_text())  # the check finds what it looks for
    for part in [HELPER, *HELPER_PARTS.glob("*.sh")]:
        if part != adapter:
            assert not decides.search(part.read_text()), part.name


def test_messages_with_quotes_and_newlines_stay_json(cluster: Cluster) -> None:
    cluster.slurm["sbatch_error"] = 'bad "quoted"\tvalue \\ here'
    cluster.save()
    res = cluster.run("submit")
    assert '"quoted"' in res.one("error")["message"]


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
