"""The quick mode's plumbing on the sandbox: one round of the session scenario returns every
field the report needs and leaves nothing behind. Structure only, never timings."""

from __future__ import annotations

import pytest

from bench import host, report

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]


def test_session_probe_structure_and_cleanup(sandbox, nodebook_setup) -> None:
    nodebook_setup("alice")
    res = host.run_probe("session", "--reps", "1")
    kinds = ("driver", "stop", "baseline_a", "baseline_b")
    assert all(len(res[k]) == 1 for k in kinds), {k: res[k] for k in kinds}
    d = res["driver"][0]
    for key in (
        "job_id",
        "ttn",
        "gone_seen",
        "exit",
        "steps",
        "to_cancel_sent",
        "peak_tree_rss_kib",
    ):
        assert key in d
    assert d["rc"] == 130
    assert d["events"][:1] == ["submitted"] and "ready" in d["events"]
    assert set(d["steps"]) >= {"submitted", "running", "ready"}
    stop = res["stop"][0]
    assert stop["stop_rc"] == 0 and "stop_exit" in stop
    for k in ("baseline_a", "baseline_b"):
        assert set(res[k][0]["steps"]) >= {"master", "submitted", "running", "endpoint", "ready"}
    # every end timed the same way, from the laptop: at least one poll after the end
    assert all(res[k][0]["gone_polls"] >= 1 for k in (*kinds, "sigint"))
    assert isinstance(res["failed_attempts"], list) and res["phase_seed"] == 0
    # the ssh wrapper saw the session: a master and a tunnel, helper commands only
    ssh = d["ssh"]
    assert ssh["connections"] >= 2 and ssh["phases"]["start"]["round_trips"] >= 3, ssh
    assert set(ssh["helper_commands"]) >= {"submit", "connection", "cancel"}, ssh
    assert "other" not in ssh["helper_commands"], ssh
    fig = report.figures({"session": res})
    assert len(report.ssh_rows(fig["ssh"])) == 2
    assert fig["session"]["ttn"]["baseline_b"]["n"] == 1
    # the probe's own leftover check (tests/harness/leftovers.py), scoped to its drivers and
    # jobs, found nothing: jobs, processes, ports, files on the cluster and the laptop
    assert res["left_behind"] == []
