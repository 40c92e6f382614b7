"""The scheduler stage's arithmetic on sdiag text (no sandbox): per-user and per-type counts,
the window's difference, when the types are the session's, and what makes a window invalid."""

from __future__ import annotations

from bench import host, sched

SDIAG = """\
Remote Procedure Call statistics by message type
\tREQUEST_FED_INFO                        ( 2049) count:252    ave_time:176    total_time:44591
\tREQUEST_JOB_INFO_SINGLE                 ( 2021) count:162    ave_time:184    total_time:29860
\tREQUEST_STATS_INFO                      ( 2035) count:20     ave_time:185    total_time:3706

Remote Procedure Call statistics by user
\talice           (    1001) count:536    ave_time:226    total_time:121318
\troot            (       0) count:306    ave_time:224    total_time:68835

Pending RPC statistics
\tNo pending RPCs
"""


def reading(fed: int, single: int, stats: int, alice: int, root: int, bob: int = 0) -> dict:
    users = {"alice": alice, "root": root} | ({"bob": bob} if bob else {})
    types = {"REQUEST_FED_INFO": fed, "REQUEST_JOB_INFO_SINGLE": single,
             "REQUEST_STATS_INFO": stats}  # fmt: skip
    return {"by_type": types, "by_user": users}


def test_parse_sdiag_by_type_and_by_user() -> None:
    got = host.parse_sdiag(SDIAG)
    assert got["by_type"] == {"REQUEST_FED_INFO": 252, "REQUEST_JOB_INFO_SINGLE": 162,
                              "REQUEST_STATS_INFO": 20}  # fmt: skip
    assert got["by_user"] == {"alice": 536, "root": 306}


def test_a_window_of_alice_only_gives_her_rpcs_and_their_types() -> None:
    before, after = reading(100, 50, 10, 500, 300), reading(106, 56, 11, 512, 301)
    w = sched.summarize(before, after, 60.0, ("PENDING", "PENDING"), "PENDING", [])
    assert w["rpcs"] == 12 and w["per_minute"] == 12.0 and w["valid"]
    assert w["types_are_alices"]
    assert w["session_types"] == {"REQUEST_FED_INFO": 6, "REQUEST_JOB_INFO_SINGLE": 6}


def test_other_users_rpcs_make_the_types_unattributable() -> None:
    before, after = reading(100, 50, 10, 500, 300, 7), reading(110, 50, 11, 506, 301, 11)
    w = sched.summarize(before, after, 120.0, ("RUNNING", "RUNNING"), "RUNNING", [])
    assert w["rpcs"] == 6 and w["per_minute"] == 3.0
    assert not w["types_are_alices"] and w["session_types"] == {}


def test_a_state_change_or_a_restart_invalidates_the_window() -> None:
    before, after = reading(100, 50, 10, 500, 300), reading(101, 50, 11, 501, 301)
    w = sched.summarize(before, after, 60.0, ("PENDING", "RUNNING"), "PENDING", [])
    assert not w["valid"] and "state" in w["problems"][0]
    restarted = reading(3, 1, 1, 4, 1)
    w = sched.summarize(before, restarted, 60.0, ("PENDING", "PENDING"), "PENDING", [])
    assert not w["valid"] and "restarted" in w["problems"][0]
    w = sched.summarize(before, after, 60.0, ("PENDING", "PENDING"), "PENDING", ["99"])
    assert w["valid"] and w["contaminated"]


def test_daemon_messages_do_not_hide_alices_types() -> None:
    before = reading(100, 50, 10, 500, 300)
    before["by_type"]["MESSAGE_NODE_REGISTRATION_STATUS"] = 4
    after = reading(112, 62, 11, 524, 303)
    after["by_type"]["MESSAGE_NODE_REGISTRATION_STATUS"] = 6
    w = sched.summarize(before, after, 60.0, ("PENDING", "PENDING"), "PENDING", [])
    assert w["types_are_alices"] and w["rpcs"] == 24
    assert w["session_types"] == {"REQUEST_FED_INFO": 12, "REQUEST_JOB_INFO_SINGLE": 12}
