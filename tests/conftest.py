"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import os
import signal
from collections.abc import Generator

import pytest

from tests.harness.lanes import Holder

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.setup",
]


def pytest_configure(config: pytest.Config) -> None:
    """Started in the background by a non-interactive shell (`make test &`, nohup), pytest
    inherits SIGINT as ignored, and so would every driver a test starts: a test's Ctrl-C would
    do nothing. Handle SIGINT again, so children start with its default, as from a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The tests that run again on the sandbox's other profiles (`make test-profile PROFILE=modules`:
# Environment Modules instead of Lmod), marked profile_session here: the module system itself,
# setup, init's discovery, a session in each tunnel mode, Ctrl-C while pending and running,
# attach, stop, ssh-config, --forward, and kernels loading their module in the job.
PROFILE_SESSION = (
    "tests/sandbox/test_profile.py",
    "tests/sandbox/test_cluster.py::test_module_only_in_login_shells",
    "tests/sandbox/test_cluster.py::test_module_python_has_no_jupyter",
    "tests/sandbox/test_environments.py::test_cuda_module_sets_its_variables",
    "tests/sandbox/test_environments.py::test_both_modules_are_listed",
    "tests/roles/test_setup.py::test_bad_input_fails_clearly_and_writes_nothing[missing-module]",
    "tests/roles/test_setup.py::test_job_on_a_socket_answers_and_cleans_up_on_scancel",
    "tests/e2e/test_doctor_setup.py::test_doctor_all_ok_one_line_per_check",
    "tests/init/test_init_sandbox.py::test_with_the_login_nodes_python_hidden_the_module_is_proposed",
    "tests/init/test_init_sandbox.py::test_a_module_that_does_not_exist_gets_close_matches_and_writes_nothing",
    "tests/e2e/test_session.py::test_jump_session_api_with_and_without_token_then_ctrl_c",
    "tests/e2e/test_session.py::test_ctrl_c_while_pending_cancels_the_job",
    "tests/e2e/test_session.py::test_attach_after_the_driver_was_killed",
    "tests/e2e/test_session.py::test_duplicate_guard_list_and_stop",
    "tests/e2e/test_session.py::test_stop_ends_only_nodebook_sessions",
    "tests/e2e/test_session.py::test_hops_mode",
    "tests/e2e/test_via_login.py",
    "tests/e2e/test_real_work.py::test_gpu_session_kernel_list_proxy_forward_and_ssh_config",
    "tests/kernels/test_role.py::test_first_run_installs_ipykernel_and_registers_both",
    "tests/kernels/test_browser.py",
)  # fmt: skip


# `make test` runs two lanes of sandbox tests side by side (tests/lanes.sh, tests/harness/lanes.py).
# bob's lane: tests that touch only bob (his setup wiped, reinstalled, re-passworded or broken
# on purpose: the bad inputs that are his).
# The main lane has every other sandbox test: alice's (her sessions would meet a second lane's at
# the duplicate guard) and those that set bob up as well run alone (SOLO).
BOB_LANE = (
    "tests/roles/test_setup.py",
    "tests/hardening/test_bad_inputs.py::test_bad_input[setup-never-run]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[missing-module]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[interrupted-setup-rerun]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[job-dies-at-start-module-load]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[jupyter-fails-to-start]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[connection-file-disk-full]",
    "tests/sandbox/test_accounting.py::test_account_without_association_is_refused",
    "tests/sandbox/test_environments.py::test_both_modules_are_listed",
    "tests/sandbox/test_profile.py::test_login_shells_have_the_profiles_module_system",
    "tests/sandbox/test_strict_nodes.py",
)  # fmt: skip

# Tests that run alone: they change what every other test sees, or look at the whole cluster.
SOLO = (
    # a daemon stopped or restarted
    "tests/sandbox/test_accounting.py::test_restarts_keep_accounting",
    "tests/sandbox/test_cluster.py::test_daemon_restart_keeps_running_jobs",
    "tests/sandbox/test_cluster.py::test_daemon_stop_and_start_a_compute_nodes_sshd",
    "tests/e2e/test_doctor_setup.py::test_doctor_with_sshd_stopped_says_cause_and_fix",
    "tests/e2e/test_node_host_keys.py::test_a_node_without_sshd_names_the_refusal_and_via_login",
    "tests/hardening/test_chaos.py",
    "tests/hardening/test_bad_inputs.py::test_bad_input[slurmctld-down]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[slurmctld-restarted-mid-session]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[slurmctld-down-at-ctrl-c]",
    "tests/hardening/test_bad_inputs.py::test_bad_input[compute-node-sshd-down]",
    # the laptop's network cut or changed
    "tests/sandbox/test_cluster.py::test_laptop_link_cut_and_restored",
    "tests/e2e/test_lost_tunnel.py::test_a_laptop_that_sleeps_inside_the_lease_comes_back_with_its_kernel",
    "tests/e2e/test_lost_tunnel.py::test_a_laptop_that_sleeps_past_the_lease_finds_the_job_ended_and_says_why",
    "tests/e2e/test_lost_tunnel.py::test_a_network_that_changes_while_awake_comes_back_by_itself",
    # the package index off, python hidden on login, the login node's known hosts replaced
    "tests/sandbox/test_index_switch.py",
    "tests/offline/test_offline_setup.py",
    "tests/roles/test_setup.py::test_bad_input_fails_clearly_and_writes_nothing[unreachable-index]",
    "tests/sandbox/test_cluster.py::test_hidden_system_python_on_login",
    "tests/roles/test_setup.py::test_setup_works_without_a_system_python",
    "tests/init/test_init_sandbox.py::test_with_the_login_nodes_python_hidden_the_module_is_proposed",
    "tests/e2e/test_node_host_keys.py::test_a_node_key_that_differs_from_the_records_stops_with_ssh_s_warning",
    "tests/e2e/test_node_host_keys.py::test_a_node_the_login_node_has_no_record_of_stops_with_the_cause",
    # both nodes filled, a partition down, GPUs (cn02 has two), the CPU use of a node
    "tests/e2e/test_session.py::test_ctrl_c_while_pending_cancels_the_job",
    "tests/e2e/test_one_owner.py::test_the_connection_call_waits_with_the_queued_job_and_brings_its_start",
    "tests/e2e/test_notify_usage.py::test_notified_when_a_queued_job_is_ready_and_before_its_time_limit",
    "tests/e2e/test_notify_usage.py::test_list_shows_one_busy_cpu_and_memory_against_the_allocation",
    "tests/e2e/test_real_work.py::test_gpu_session_kernel_list_proxy_forward_and_ssh_config",
    "tests/sandbox/test_gpus.py::test_a_gpu_job_gets_cuda_visible_devices",
    "tests/sandbox/test_gpus.py::test_batch_job_on_gpu_partition",
    "tests/hardening/test_bad_inputs.py::test_bad_input[pending-longer-than-limit]",
    # alice and bob both (set up, or their files compared), or every process's argv and /tmp
    "tests/roles/test_setup.py::test_alice_and_bob_are_independent",
    "tests/e2e/test_node_host_keys.py::test_bob_with_the_site_wide_file_only",
    "tests/e2e/test_layout.py::test_non_default_layout_session_uses_only_the_configured_paths",
    "tests/hardening/test_security.py::test_session_secrets_and_modes",
    "tests/hardening/test_security.py::test_bob_gets_403_from_alices_tcp_endpoint",
    "tests/init/test_init_sandbox.py::test_a_fresh_user_is_shown_the_host_key_asked_once_and_gets_a_working_inventory",
    "tests/init/test_init_sandbox.py::test_accounts_alice_gets_chemistry_for_chem_and_bob_is_told_to_pick_another",
)  # fmt: skip


def listed(nodeid: str, table: tuple[str, ...]) -> bool:
    return any(nodeid == n or nodeid.startswith((f"{n}::", f"{n}[")) for n in table)


def in_profile_session(nodeid: str) -> bool:
    return listed(nodeid, PROFILE_SESSION)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that restart the sandbox cluster run after every other test; the tests listed in
    PROFILE_SESSION, BOB_LANE and SOLO get their table's marker (tests/lanes.sh selects by it)."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)
    for item in items:
        for table, mark in (
            (PROFILE_SESSION, pytest.mark.profile_session),
            (BOB_LANE, pytest.mark.bob_lane),
            (SOLO, pytest.mark.solo),
        ):
            if listed(item.nodeid, table):
                item.add_marker(mark)


_LANES = Holder()


def _solo(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("solo") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Each sandbox test holds the lanes' lock (shared; solo: exclusive) from its setup to its
    teardown, so a test of the other lane never runs beside a solo one."""
    if item.get_closest_marker("sandbox") is None:
        return (yield)
    _LANES.before(_solo(item))
    try:
        return (yield)
    finally:
        _LANES.after(_solo(item), _solo(nextitem))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI ($CI set, as .ci/run does) a skipped test is a failure: it tested nothing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        names = ", ".join(str(getattr(r, "nodeid", r)) for r in skipped[:10])
        reporter.ensure_newline()
        reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failed here: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
