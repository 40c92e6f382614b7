"""The remote helper's probes before setup (lib/nodebook-remote/probes.sh): environment, doctor,
discover. No sandbox: a fake Slurm and fake `module` functions (tests/unit/helper_cluster.py).
"""

from __future__ import annotations

import json
import subprocess

from tests.unit.helper_cluster import Cluster

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
