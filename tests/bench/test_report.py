"""The benchmark report's plumbing on synthetic results: every figure gets a row, targets are
compared the right way round. No timing of anything is asserted here."""

from __future__ import annotations

from bench import report


def session_result(driver_ttn: float, base_ttn: float, gone: float) -> dict:
    rnd = {"ttn": driver_ttn, "ctrl_c_gone": gone, "ctrl_c_exit": gone + 0.5,
           "peak_tree_rss_kib": 100 * 1024, "maxrss_single_kib": 60 * 1024}  # fmt: skip
    return {"driver": [rnd, rnd], "baseline": [{"ttn": base_ttn, "ctrl_c_gone": 0.2}] * 2}


def test_session_rows_compare_against_targets() -> None:
    met = {r.figure.split(" (")[0]: r.met for r in report.session_rows(session_result(4, 3.5, 0.5))}
    assert met["time to notebook, ratio driver/baseline"] is True
    assert met["time to notebook, driver overhead"] is True
    assert met["Ctrl-C -> job gone from squeue"] is True
    missed = report.session_rows(session_result(9, 3, 2))
    assert [r.met for r in missed if r.met is not None] == [False, False, False]


def test_throughput_ratio_and_errors() -> None:
    res = {"size_mib": 256, "modes": {
        "jump": {"driver": [90.0], "baseline": [100.0], "endpoint": "socket"},
        "hops": {"driver": [70.0], "baseline": [100.0], "endpoint": "socket"},
        "via-login": {"error": "boom"},
    }}  # fmt: skip
    rows = report.throughput_rows(res)
    assert [r.met for r in rows] == [True, False, None]


def test_sched_rows_invalid_window_has_no_verdict() -> None:
    w = {"per_minute": 12.0, "valid": True, "contaminated": False, "states_seen": ["PENDING"],
         "sdiag_alice_per_minute": 12.0}  # fmt: skip
    bad = {**w, "valid": False, "states_seen": ["PENDING", "RUNNING"]}
    rows = report.sched_rows({"pending": w, "running": bad})
    assert rows[0].met is True and rows[1].met is None and "INVALID" in rows[1].value


def test_concurrent_collisions_and_leftovers_fail() -> None:
    s = [{"port": 1, "node": "cn01", "socket": "/a", "http": 200},
         {"port": 2, "node": "cn01", "socket": "/b", "http": 200}]  # fmt: skip
    res = {"n": 2, "ready": 2, "all_ready_s": 1.0, "sessions": s}
    assert report.concurrent_rows(res, [])[0].met is True
    assert report.concurrent_rows(res, ["job 1 still in squeue"])[0].met is False
    s[1]["port"] = 1
    assert report.concurrent_rows(res, [])[0].met is False


def test_table_and_markdown_have_every_row() -> None:
    rows = report.session_rows(session_result(4, 3.5, 0.5))
    text, md = report.table(rows), report.markdown_table(rows)
    for r in rows:
        assert r.figure in text and r.figure in md


def test_ssh_rows_count_connections_and_round_trips_per_phase() -> None:
    def ssh(conn: int, start: int, hold: int, cleanup: int) -> dict:
        phases = {"start": {"round_trips": start}, "hold": {"round_trips": hold},
                  "cleanup": {"round_trips": cleanup}}  # fmt: skip
        return {"connections": conn, "round_trips": start + hold + cleanup, "phases": phases}

    res = {"driver": [{"ssh": ssh(2, 5, 1, 2)}, {"ssh": ssh(2, 6, 1, 2)}, {"ssh": ssh(2, 5, 2, 2)}]}
    rows = report.ssh_rows(res)
    assert [r.value for r in rows] == ["2", "9 (8-9): to ready 5 (5-6), held 1 (1-2), cleanup 2"]
    assert report.ssh_rows({"driver": [{"ttn": 1.0}]}) == []
