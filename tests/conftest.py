"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import os
import signal

import pytest

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


def in_profile_session(nodeid: str) -> bool:
    return any(nodeid == n or nodeid.startswith((f"{n}::", f"{n}[")) for n in PROFILE_SESSION)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that restart the sandbox cluster run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)
    for item in items:
        if in_profile_session(item.nodeid):
            item.add_marker(pytest.mark.profile_session)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI ($CI set, as .ci/run does) a skipped test is a failure: it tested nothing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        names = ", ".join(str(getattr(r, "nodeid", r)) for r in skipped[:10])
        reporter.ensure_newline()
        reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failed here: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
