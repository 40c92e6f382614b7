"""Every remote step is the remote helper's: no shell scripts in YAML or Python strings.

- every raw task in playbooks/ and roles/ calls the helper (installed, or piped in);
- no string in playbooks/*.yml, roles/*/tasks/*.yml or roles/*/vars/*.yml is a block of more
  than 5 lines (remote logic lives in linted, tested files);
- no string in driver/*.py is a shell script, or a one-line chain of shell commands;
- only driver/remote.py runs commands over the master, and every remote command the driver
  builds (helper calls, tunnels' remote ends) starts the helper.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from driver.inventory import Cluster
from driver.paths import DATA, rules
from driver.remote import Remote
from driver.ssh import Master
from driver.tunnel import Endpoint, Tunnel

DRIVER = Path(__file__).resolve().parents[2] / "driver"
YAML_FILES = sorted(
    [
        *DATA.glob("playbooks/*.yml"),
        *DATA.glob("roles/*/tasks/*.yml"),
        *DATA.glob("roles/*/vars/*.yml"),
    ]
)
# Shell structure (not English words): "...; then", "...; do", a line that is "fi"/"done"/"esac",
# command substitution or parameter expansion.
SHELL_WORDS = re.compile(r";\s*(then|do)\b|^\s*(fi|done|esac)\s*;?$|\$\(|\$\{", re.MULTILINE)
CHAINED = re.compile(
    r";\s*(then|do|done|fi|rm|kill|exec|cat|echo|printf|touch|if|for|while|umask)\b"
)


def tasks(items: Any) -> list[dict[str, Any]]:
    """Every task of a play list or task list, blocks included."""
    found: list[dict[str, Any]] = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        if "tasks" in item:
            found += tasks(item["tasks"])
        for key in ("block", "rescue", "always"):
            if key in item:
                found += tasks(item[key])
        if "hosts" not in item and not any(k in item for k in ("block", "rescue", "always")):
            found.append(item)
    return found


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_raw_tasks_call_the_helper_and_no_shell_module(path: Path) -> None:
    for task in tasks(yaml.safe_load(path.read_text())):
        assert "ansible.builtin.shell" not in task and "shell" not in task, (path, task["name"])
        raw = task.get("ansible.builtin.raw")
        if raw is not None:
            assert "_nb_helper" in raw or "nodebook-remote" in raw, (path, task["name"])


def is_expression(text: str) -> bool:
    """A Jinja expression folded over lines (data, not a script)."""
    stripped = text.strip()
    return stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_no_block_of_more_than_five_lines(path: Path) -> None:
    for text in strings(yaml.safe_load(path.read_text())):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) <= 5 or is_expression(text), (path, text[:200])


def driver_strings() -> list[tuple[Path, int, str]]:
    found = []
    for path in sorted(DRIVER.glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and id(node) not in docstrings:
                found.append((path, node.lineno, node.value))
    return found


def test_driver_builds_no_shell_scripts() -> None:
    for path, line, text in driver_strings():
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert not (len(lines) > 5 and SHELL_WORDS.search(text)), f"{path.name}:{line}"
        assert not CHAINED.search(text), f"{path.name}:{line}: {text[:80]!r}"


def test_only_the_remote_module_runs_commands_over_the_master() -> None:
    for path in sorted(DRIVER.glob("*.py")):
        if path.name in ("remote.py", "ssh.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                recv = ast.unparse(node.func.value)
                assert not (node.func.attr == "run" and "master" in recv), (
                    f"{path.name}:{node.lineno}"
                )


def test_the_checks_catch_what_they_look_for() -> None:
    assert CHAINED.search('d="$HOME/x"; touch "$d/heartbeat"')
    assert SHELL_WORDS.search("for i in 1 2; do\n echo $i\ndone")
    assert not SHELL_WORDS.search("examples:\n  nodebook init\n\nthen: nodebook setup")
    assert len(tasks([{"hosts": "all", "tasks": [{"name": "a", "block": [{"name": "b"}]}]}])) == 1
    assert is_expression("{{ [1,\n 2]\n + [3] }}") and not is_expression("a=1\nb=2")


CLUSTER = Cluster(name="c", inventory=Path("i"), host="login", user="alice")


def test_every_remote_command_starts_the_helper(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run the driver's remote calls and tunnels against a recording subprocess."""
    seen: list[list[str]] = []

    class Done:
        returncode, stdout, stderr = 0, '{"nodebook": "stopped", "job_id": "7"}\n', ""

    def record(argv: list[str], *args: object, **kw: object) -> Done:
        seen.append(list(argv))
        return Done()

    class Proc:
        def __init__(self, argv: list[str], *args: object, **kw: object) -> None:
            seen.append(list(argv))

        def poll(self) -> int | None:
            return None

    monkeypatch.setattr(subprocess, "run", record)
    monkeypatch.setattr(subprocess, "Popen", Proc)
    remote = Remote(Master(CLUSTER, tmp_path), CLUSTER)
    remote.heartbeat("7")
    remote.ended("7")
    assert remote.cancel("7")
    remote.call("list", check=False)
    remote.state("7")
    remote.tidy_node("cn01", "7")
    for mode, ep in (("jump", Endpoint("cn01", socket="/s")), ("hops", Endpoint("cn01", port=9))):
        Tunnel(remote, mode, ep, 18000, "7", hop_socket="/tmp/h.sock").start()
    helper = str(rules().helper_command(CLUSTER.base_dir))
    # (ssh -G: the node's known_hosts files, read locally)
    commands = [a[-1] for a in seen if a[0] == "ssh" and "-O" not in a and "-G" not in a]
    assert len(commands) == 8
    for command in commands:
        assert command.startswith(helper + " "), command
