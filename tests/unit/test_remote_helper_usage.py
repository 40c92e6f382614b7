"""The helper's `usage` command and `list`'s use fields (sstat of the batch step), on the fake
Slurm: what the driver's live line and `nodebook list` read (driver/usage.py)."""

from __future__ import annotations

import time

from tests.unit.helper_cluster import Cluster

TRES = "cpu=2,mem=1G,node=1,billing=2,gres/gpu=1"
USE = {"cpu": "00:01:40", "rss": "9660K", "peak": "12M"}


def test_list_reports_the_use_of_running_sessions_with_one_sstat(cluster: Cluster) -> None:
    cluster.job("70", state="RUNNING", node="cn01", elapsed="2:00", time_limit="1:00:00",
                tres=TRES, use=USE)  # fmt: skip
    cluster.job("71", state="RUNNING", node="cn02", elapsed="0:01", tres=TRES)  # sstat: nothing
    cluster.job("72", state="PENDING", reason="Resources")
    res = cluster.run("list")
    assert res.rc == 0, res
    sessions = {s["job_id"]: s for s in res.kind("session")}
    assert sessions["70"]["cpu"] == "00:01:40" and sessions["70"]["rss"] == "9660K"
    assert sessions["70"]["peak_rss"] == "12M" and sessions["70"]["gpu_util"] == ""
    assert sessions["70"]["tres"] == TRES and sessions["70"]["time_limit"] == "1:00:00"
    assert "cpu" not in sessions["71"] and "cpu" not in sessions["72"]
    (sstat,) = cluster.calls("sstat")  # one call for every running session
    assert sstat["argv"][sstat["argv"].index("-j") + 1] == "70.batch,71.batch"


def test_usage_of_one_session_and_the_previous_look(cluster: Cluster) -> None:
    cluster.job("80", state="RUNNING", node="cn01", elapsed="2:00", time_limit="10:00",
                tres=TRES, use={**USE, "gpuutil": "87"})  # fmt: skip
    first = cluster.run("usage", "80").one("usage")
    assert (first["job_id"], first["cpu"], first["gpu_util"]) == ("80", "00:01:40", "87")
    assert "cpu_then" not in first  # no look before this one
    kept = cluster.base / "jobs" / "80.use"
    at, cpu = kept.read_text().split()
    assert cpu == "00:01:40" and abs(int(at) - time.time()) < 60
    # a look 30 s ago: measured against, and kept (it is younger than a minute)
    kept.write_text(f"{int(time.time()) - 30} 00:01:10\n")
    second = cluster.run("usage", "80").one("usage")
    assert second["cpu_then"] == "00:01:10" and 30 <= int(second["then_age"]) <= 35
    assert kept.read_text().split()[1] == "00:01:10"
    # a look over a minute old: measured against, then replaced by this one
    kept.write_text(f"{int(time.time()) - 90} 00:00:10\n")
    third = cluster.run("usage", "80").one("usage")
    assert third["cpu_then"] == "00:00:10" and kept.read_text().split()[1] == "00:01:40"


def test_usage_of_a_job_that_is_no_session(cluster: Cluster) -> None:
    cluster.job("90", state="RUNNING", name="other", use=USE)
    res = cluster.run("usage", "90")
    assert res.rc == 9 and res.one("error")["error"] == "not-found"
    assert "no session 90" in res.one("error")["message"]
    assert cluster.calls("sstat") == []
