"""The quick mode's plumbing on the sandbox: one round of the session scenario returns every
field the report needs and leaves nothing behind. Structure only, never timings."""

from __future__ import annotations

import time

import pytest

from bench import host, leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]


def test_session_probe_structure_and_cleanup(sandbox, nodebook_setup) -> None:
    nodebook_setup("alice")
    res = host.run_probe("session", "--reps", "1")
    assert len(res["driver"]) == 1 and len(res["baseline"]) == 1
    d = res["driver"][0]
    for key in ("job_id", "ttn", "ctrl_c_gone", "ctrl_c_exit", "peak_tree_rss_kib"):
        assert key in d
    assert d["rc"] == 130
    assert d["events"][:1] == ["submitted"] and "ready" in d["events"]
    jobs = [(r["job_id"], "alice") for r in res["driver"] + res["baseline"]]
    deadline = time.monotonic() + 30
    # jobs, Jupyter processes and runtime dirs of this test's jobs (the laptop's ssh processes
    # are not checked here: other people's drivers share the sandbox's laptop)
    while (left := leftovers.check(jobs)) and (time.monotonic() < deadline):
        time.sleep(1)
    assert left == []
