"""`nodebook setup`'s progress: ansible-runner events -> phases, a live task line, a full log;
and when the driver asks for the Jupyter password itself."""

from __future__ import annotations

import io
import json
from pathlib import Path

from driver.commands import PASSWORD_PROMPT, extra_var_names
from driver.progress import Renderer, SetupProgress, setup_phase


def start(role: str, tasks_file: str, name: str, action: str = "ansible.builtin.command"):
    return {
        "event": "playbook_on_task_start",
        "stdout": f"\nTASK [{role} : {name}] ****",
        "event_data": {
            "task": name,
            "role": role,
            "task_action": action,
            "task_path": f"/x/roles/{role}/tasks/{tasks_file}:3",
        },
    }


def changed():
    return {
        "event": "runner_on_ok",
        "stdout": "changed: [c]",
        "event_data": {"res": {"changed": 1}},
    }


RUN = [
    start("nodebook_environment", "validate.yml", "Load the modules"),
    start("nodebook_jupyter", "validate.yml", "Check the inputs"),
    start("nodebook_job", "validate.yml", "Ask Slurm (sbatch --test-only)"),
    start("nodebook_jupyter", "install.yml", "x", action="ansible.builtin.validate_argument_spec"),
    start("nodebook_jupyter", "install.yml", "Install the pinned requirements with pip"),
    changed(),
    start("nodebook_password", "install.yml", "Hash the password"),
    start("nodebook_jupyter", "configure.yml", "Record the installed versions"),
    start("nodebook_jupyter_config", "configure.yml", "Write jupyter_server_config.py"),
    changed(),
    start("nodebook_job", "configure.yml", "Render the job script"),
    {"event": "playbook_on_stats", "stdout": "PLAY RECAP", "event_data": {"changed": {"c": 2}}},
]


def test_tasks_map_to_five_phases_in_order_and_never_go_back():
    assert setup_phase(RUN[0]["event_data"]) == "checking"
    assert setup_phase(RUN[2]["event_data"]) == "checking"  # validate.yml of any role
    assert setup_phase(RUN[3]["event_data"]) is None  # argument specs: the current phase
    assert setup_phase(RUN[7]["event_data"]) is None  # recording versions stays where it is
    out, log = io.StringIO(), io.StringIO()
    progress = SetupProgress(Renderer(False, out, live=False), log)
    for event in RUN:
        progress.event(event)
    progress.close(ok=True)
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == [
        "checking",
        "installing",
        "password",
        "config",
        "job",
    ]
    assert all(ln.startswith("ok ") for ln in lines)
    assert "1 changed" in lines[1] and "1 changed" in lines[3]
    assert progress.counts("c")["changed"] == 2
    # the log has every event's text, the phase lines are all the user sees
    assert "TASK [nodebook_jupyter : Install the pinned requirements with pip]" in log.getvalue()
    assert "TASK [" not in out.getvalue()


def test_json_mode_has_task_and_phase_events_and_verbose_shows_ansible():
    out = io.StringIO()
    progress = SetupProgress(Renderer(True, out), io.StringIO())
    for event in RUN:
        progress.event(event)
    progress.close(ok=False)
    events = [json.loads(x) for x in out.getvalue().splitlines()]
    tasks = [e["message"] for e in events if e["event"] == "task"]
    assert "TASK [nodebook_jupyter : Install the pinned requirements with pip]" in tasks
    phases = [e["data"] for e in events if e["event"] == "phase"]
    assert [p["phase"] for p in phases][-1] == "job script" and phases[-1]["ok"] is False
    verbose_out = io.StringIO()
    verbose = SetupProgress(Renderer(False, verbose_out, live=False), io.StringIO(), verbose=True)
    for event in RUN:
        verbose.event(event)
    assert "TASK [nodebook_job : Render the job script]" in verbose_out.getvalue()


def test_a_failed_task_is_named():
    progress = SetupProgress(Renderer(True, io.StringIO()), io.StringIO())
    progress.event(RUN[0])
    progress.event(
        {"event": "runner_on_failed", "event_data": {"task": "Load the modules", "res": {}}}
    )
    assert progress.failed_task == "Load the modules"


def test_the_password_is_not_asked_when_extra_vars_give_it(tmp_path: Path):
    plain = tmp_path / "vars.json"
    plain.write_text('{"nodebook_password_secret": "x", "a": 1}')
    vault = tmp_path / "vault.yml"
    vault.write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    assert extra_var_names(["-e", f"@{plain}"]) == {"nodebook_password_secret", "a"}
    assert extra_var_names(["--extra-vars", "a=1 b='two words'"]) == {"a", "b"}
    assert extra_var_names(["-e", '{"c": 3}', "--check"]) == {"c"}
    assert extra_var_names(["-e", f"@{vault}"]) is None  # cannot know: do not ask
    assert extra_var_names(["--diff"]) == set()


def test_the_prompt_pattern_answers_both_of_ansibles_prompts():
    import re

    pattern = re.compile(PASSWORD_PROMPT, re.M)
    prompt = "Jupyter password, not echoed (Enter keeps the stored one) []: "
    assert pattern.search(prompt) and pattern.search("confirm " + prompt)
    assert not pattern.search("Password: ")


def test_the_sessions_wait_is_one_live_line_on_a_terminal_and_lines_elsewhere():
    from driver.progress import Update

    def feed(renderer: Renderer) -> None:
        renderer.emit(Update("submitted", job_id="5"))
        for reason in ("Priority", "Resources"):
            renderer.emit(Update("pending", job_id="5", state="PENDING", reason=reason))
        renderer.emit(Update("running", job_id="5", node="cn01"))

    plain = io.StringIO()
    feed(Renderer(False, plain, live=False))
    assert plain.getvalue().splitlines() == [
        "submitted job 5",
        "job 5: PENDING (Priority), no estimate of the start yet",
        "job 5: PENDING (Resources), no estimate of the start yet",
        "job 5: RUNNING on cn01, starting Jupyter",
    ]
    term = io.StringIO()
    feed(Renderer(False, term, live=True))
    text = term.getvalue()
    assert "submitted job 5" in text and "RUNNING on cn01" in text
    # the pending states were drawn in place on the status line, not left as lines of their own
    assert "job 5: PENDING (Priority), no estimate of the start yet\n" not in text
