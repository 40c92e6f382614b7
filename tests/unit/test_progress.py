"""ansible-runner events -> progress updates -> lines; secrets are never kept."""

import io
import json
from contextlib import contextmanager
from pathlib import Path

from driver import commands
from driver.errors import ExitCode
from driver.inventory import Cluster
from driver.progress import Renderer, Update, carries_secret, gpus_text, parse_event


def ok(res, event="runner_on_ok"):
    return {"event": event, "event_data": {"res": res, "task": "t"}}


def status(**kw):
    base = {
        "nodebook": "status",
        "job_id": "12",
        "state": "PENDING",
        "reason": "Resources",
        "node": "",
        "start": "2026-01-01T12:00:00",
    }
    base.update(kw)
    return ok({"stdout": json.dumps(base)}, "runner_retry")


def test_submitted_line_of_the_submit_task():
    line = {"nodebook": "submitted", "job_id": "42", "heartbeat_timeout": 600, "socket": "/s"}
    updates = parse_event(ok({"stdout": json.dumps(line) + "\n" + json.dumps(
        {"nodebook": "status", "job_id": "42", "state": "PENDING", "reason": "Priority",
         "start": ""})}))  # fmt: skip
    assert [u.kind for u in updates] == ["submitted", "pending"]
    assert updates[0].data["heartbeat_timeout"] == 600 and updates[0].data["socket"] == "/s"


def test_pending_retry_carries_reason_and_estimate():
    (u,) = parse_event(status())
    assert (u.kind, u.state, u.reason, u.start) == (
        "pending",
        "PENDING",
        "Resources",
        "2026-01-01T12:00:00",
    )
    line = Renderer(False, io.StringIO()).human(u)
    assert line == "job 12: PENDING (Resources), estimated start 2026-01-01T12:00:00"


def test_no_estimate_is_said_in_words():
    (u,) = parse_event(status(start=""))
    line = Renderer(False, io.StringIO()).human(u)
    assert line == "job 12: PENDING (Resources), no estimate of the start yet"
    assert "N/A" not in line


def test_running_and_ready_from_the_helpers_lines():
    (run,) = parse_event(status(state="RUNNING", node="cn01", reason=""))
    assert (run.kind, run.node, run.job_id) == ("running", "cn01", "12")
    conn = {"nodebook": "connection", "job_id": "7", "node": "cn02", "endpoint": "socket",
            "socket": "/tmp/nodebook-alice-7/jupyter.sock"}  # fmt: skip
    (ready,) = parse_event(ok({"stdout": json.dumps(conn)}))
    assert ready.kind == "ready" and ready.data["socket"].endswith("jupyter.sock")


def test_helper_error_line_gives_message_and_exit_code():
    err = {"nodebook": "error", "error": "duplicate", "message": "a session is already running"}
    ev = {"event": "runner_on_failed", "event_data": {"res": {"stdout": json.dumps(err), "rc": 8}}}
    (u,) = parse_event(ev)
    assert (u.kind, u.code, u.message) == ("error", ExitCode.DUPLICATE, err["message"])


def test_missing_helper_means_not_set_up():
    res = {"rc": 127, "stdout": "", "stderr": "bash: /home/a/.nodebook/bin/nodebook-remote: "
           "No such file or directory", "msg": "non-zero return code"}  # fmt: skip
    (u,) = parse_event({"event": "runner_on_failed", "event_data": {"res": res}})
    assert u.code == ExitCode.NOT_SET_UP and "nodebook setup" in (u.message or "")


def test_tagged_failure_maps_exit_code():
    ev = {
        "event": "runner_on_failed",
        "event_data": {"res": {"msg": "[not-set-up] nodebook is not set up: run setup"}},
    }
    (u,) = parse_event(ev)
    assert u.kind == "error" and u.code == ExitCode.NOT_SET_UP
    assert u.message == "nodebook is not set up: run setup"


def test_unreachable_is_ssh_error():
    ev = {"event": "runner_on_unreachable", "event_data": {"res": {"msg": "Permission denied"}}}
    (u,) = parse_event(ev)
    assert u.code == ExitCode.SSH


def test_ignored_failure_is_not_an_error():
    ev = {"event": "runner_on_failed", "event_data": {"res": {"msg": "x"}, "ignore_errors": True}}
    assert parse_event(ev) == []


def test_secret_events_are_dropped():
    assert carries_secret({"event_data": {"res": {"censored": "hidden", "_ansible_no_log": True}}})
    assert carries_secret({"event_data": {"res": {"stdout": '{"token": "abc"}'}}})
    assert not carries_secret(status())


def test_json_lines_and_dedup():
    buf = io.StringIO()
    r = Renderer(True, buf)
    r.emit(
        Update(
            "ready",
            job_id="5",
            node="cn01",
            url="http://127.0.0.1:1/lab",
            local_port=1,
            data={"url": "http://127.0.0.1:1/lab", "local_port": 1},
        )
    )
    r.emit(Update("pending", job_id="5", state="PENDING"))
    r.emit(Update("pending", job_id="5", state="PENDING"))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    ready = json.loads(lines[0])
    assert ready["event"] == "ready" and ready["job_id"] == "5" and ready["node"] == "cn01"
    # the contract: url, job_id, node and local_port are top-level keys of the ready line
    assert ready["local_port"] == 1 and ready["url"] == "http://127.0.0.1:1/lab"
    assert ready["data"]["local_port"] == 1 and ready["data"]["url"].startswith("http://")


def test_submitted_from_the_submit_tasks_line():
    stdout = (
        'NODEBOOK_HOME=/home/alice\nNODEBOOK_SLURM=ok\n{"nodebook": "submitted", "job_id": "31"}\n'
    )
    (u,) = parse_event(ok({"stdout": stdout}))
    assert (u.kind, u.job_id) == ("submitted", "31")
    # a preflight that stopped before sbatch reports nothing
    assert parse_event(ok({"stdout": "NODEBOOK_HOME=/home/alice\nNODEBOOK_SLURM=ok\n"})) == []


def test_ready_from_the_connection_line_without_waiting_for_set_stats():
    conn = {
        "nodebook": "connection",
        "job_id": "31",
        "node": "cn02",
        "endpoint": "socket",
        "socket": "/tmp/nodebook-alice-31/jupyter.sock",
        "base_url": "/",
        "app": "lab",
    }
    (u,) = parse_event(ok({"stdout": json.dumps(conn) + "\n"}))
    assert (u.kind, u.job_id, u.node) == ("ready", "31", "cn02")
    assert u.data["socket"] == "/tmp/nodebook-alice-31/jupyter.sock"
    assert "nodebook" not in u.data


def test_gpus_are_counted_the_same_on_the_ready_line_and_in_list(monkeypatch):
    """connection.json's gpus is CUDA_VISIBLE_DEVICES (index 0 is one GPU, not none); `list`
    has Slurm's count. Both say how many, in the same words."""
    assert gpus_text(devices="0") == "1 GPU: index 0"
    assert gpus_text(devices="0,1") == "2 GPUs: indices 0,1"
    assert gpus_text(devices="GPU-3f2a") == "1 GPU: GPU-3f2a"
    assert gpus_text(count="1") == "1 GPU" and gpus_text(count="2") == "2 GPUs"
    assert gpus_text() == gpus_text(devices="", count="") == ""
    # the ready line
    buf = io.StringIO()
    Renderer(False, buf, live=False).emit(
        Update("ready", job_id="5", node="cn02", url="http://127.0.0.1:1/lab",
               data={"gpus": "0"})
    )  # fmt: skip
    ready = buf.getvalue()
    assert "on cn02 (1 GPU: index 0):" in ready and "GPUs 0" not in ready, ready

    # `nodebook list`, its helper's session line faked
    class FakeRemote:
        def sessions(self):
            return [{"job_id": "5", "state": "RUNNING", "node": "cn02", "gpus": "1"}]

    @contextmanager
    def connected(cluster):
        yield FakeRemote()

    cluster = Cluster(name="hpc", inventory=Path("i"), host="login")
    monkeypatch.setattr(commands, "all_clusters", lambda *a: [cluster])
    monkeypatch.setattr(commands, "connected", connected)
    buf = io.StringIO()
    assert commands.list_sessions(Path("i"), None, None, Renderer(False, buf, live=False)) == 0
    line, use = buf.getvalue().splitlines()
    assert " cn02     1 GPU " in line, line
    assert use == "    no use reported yet (sstat of the job's batch step answered nothing)", use
