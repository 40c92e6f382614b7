"""Bridge to ansible-runner: run a playbook in a temporary private_data_dir that is deleted.

- Events go to a callback; the handler returns False for events that carry a secret, so they are
  never kept. Extravars hold no secrets (the token never enters a playbook's variables).
- ansible-runner's cancel is SIGKILL: no ``always:`` runs, so the driver itself knows the job id
  (from the ``submitted`` event) and cancels the job.
"""

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.paths import ANSIBLE_CFG, DATA, PLAYBOOKS
from driver.progress import Update, carries_secret, parse_event
from driver.signals import shielded
from driver.state import owned_temp_dir


def remove_tree(path: Path, tries: int = 5) -> None:
    """Remove a directory that a process being killed may still write into (ansible-playbook's
    callback drops event files there): try again until it is gone."""
    for attempt in range(tries):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.05 * (attempt + 1))


@dataclass
class PlaybookRun:
    """One playbook run; ``updates`` are delivered to ``on_update`` from runner's thread."""

    cluster: Cluster
    playbook: str
    extravars: dict[str, Any]
    env: dict[str, str]
    on_update: Callable[[Update], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    errors: list[Update] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    rc: int | None = None
    # setup: every raw event (its progress and log), ansible-playbook's own options, and the
    # answers to its prompts (kept in memory: ansible-runner types them into its pty).
    on_event: Callable[[dict[str, Any]], None] | None = None
    cmdline: str | None = None
    passwords: dict[str, str] | None = None

    def _event(self, event: dict[str, Any]) -> bool:
        if self.on_event is not None:
            self.on_event(event)
        for update in parse_event(event):
            if update.kind == "error":
                self.errors.append(update)
            else:
                self.on_update(update)
        data = event.get("event_data") or {}
        if event.get("event") == "playbook_on_stats" and isinstance(data, dict):
            self.stats = dict(data.get("artifact_data") or {})
        return not carries_secret(event)

    def run(self, wait: Callable[[threading.Thread], None] | None = None) -> None:
        """Run to completion (``wait`` polls the thread so the caller can react to signals)."""
        import ansible_runner

        private = owned_temp_dir("nodebook-runner-")
        venv_bin = str(Path(sys.executable).parent)
        envvars = {
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
            "ANSIBLE_NOCOLOR": "1",
            # ansible-runner defaults this to False, which makes Ansible pass
            # -o StrictHostKeyChecking=no to ssh (over the inventory's ssh config): keep it on.
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            **self.env,
        }
        try:
            thread, runner = ansible_runner.run_async(
                private_data_dir=str(private),
                project_dir=str(DATA),
                playbook=str(PLAYBOOKS / self.playbook),
                inventory=str(Path(self.cluster.inventory).resolve()),
                limit=self.cluster.name,
                extravars=self.extravars,
                envvars=envvars,
                settings={"pexpect_timeout": 0.1, "suppress_ansible_output": True},
                event_handler=self._event,
                cancel_callback=self.cancelled.is_set,
                quiet=True,
                rotate_artifacts=1,
                timeout=None,
                **({"cmdline": self.cmdline} if self.cmdline else {}),
                **({"passwords": self.passwords} if self.passwords is not None else {}),
            )
            try:
                if wait is not None:
                    wait(thread)
                thread.join()
            except BaseException:  # (wait's own reaction comes first) stop the play, then go
                self.cancelled.set()
                with shielded():
                    thread.join(30)
                raise
            self.status, self.rc = runner.status, runner.rc
        finally:
            with shielded():  # a Ctrl-C as the play ends must not leave half of it behind
                remove_tree(private)

    def raise_for_failure(self, what: str) -> None:
        """Turn a failed run into one NodebookError (the first tagged task failure wins)."""
        if self.status == "successful":
            return
        if self.errors:
            first = self.errors[0]
            raise NodebookError(
                first.message or f"{what} failed", ExitCode(first.code or ExitCode.ERROR)
            )
        raise NodebookError(f"{what} failed ({self.status}, rc={self.rc})")


def run_cleanup(
    cluster: Cluster, selection: dict[str, Any], env: dict[str, str], what: str
) -> list[str]:
    """cleanup.yml for one selection (``nodebook_job_id``, ``nodebook_session_tag`` or
    ``nodebook_all``) as the cluster's user: the ids it cancelled. A failed run raises."""
    ev = {**selection, **({"ansible_user": cluster.user} if cluster.user else {})}
    stopped: list[str] = []

    def on_update(update: Update) -> None:
        if update.kind == "stopped" and update.data.get("cancelled") and update.job_id:
            stopped.append(update.job_id)

    run = PlaybookRun(cluster, "cleanup.yml", ev, env, on_update)
    run.run()
    run.raise_for_failure(what)
    return stopped
