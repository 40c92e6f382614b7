"""The option table (plugins/filter/nodebook.py OPTIONS) is the one definition of each option.

What is derived from it (argparse, the roles' checks and #SBATCH lines, session.yml's and the
driver's submission) is shown to follow a throwaway row added to a copy of the table; what
cannot be derived (Ansible reads argument_specs.yml and defaults/main.yml as they are, the
remote helper is bash) is checked against it here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from driver import cli, options, paths, progress
from driver.errors import NodebookError
from driver.paths import rules

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(REPO / ".venv" / "bin" / "ansible-playbook")

# A throwaway option: one row, added to a copy of the table and nowhere else.
ROW = (
    '    Option("nodebook_job_frobs", "cpus", "frobs for the job", flag="--frobs", metavar="N",\n'
    '           role="nodebook_job", session=True, slurm="--frobs"),\n'
)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def role_file(role: str, rel: str) -> Path:
    return paths.ROLES / role / rel


# --- what cannot be derived is checked against the table --------------------------------


def test_every_row_names_a_rule_and_a_known_kind() -> None:
    r = rules()
    assert len({o.variable for o in r.OPTIONS}) == len(r.OPTIONS), "a variable has two rows"
    for o in r.OPTIONS:
        assert o.rule in r.RULES, o
        assert not o.session or o.role, f"{o.variable}: a session's option belongs to a role"
        assert not o.flag or o.help, f"{o.variable}: a command-line option needs its help"
    assert set(r.RULE_TYPES) | set(r.CHOICES) <= set(r.RULES)
    assert set(r.FIXED) == set(r.EXTRA)  # one entry per scheduler that has options


@pytest.mark.parametrize("row", [o.variable for o in rules().OPTIONS if o.role])
def test_role_rows_match_the_roles_defaults_and_argument_specs(row: str) -> None:
    """Ansible validates a role's variables against its argument_specs.yml: each row's type,
    choices and scheduler flag are the table's, and its default is the role's."""
    o = next(o for o in rules().OPTIONS if o.variable == row)
    defaults = load(role_file(o.role, "defaults/main.yml"))
    assert row in defaults, f"{row}: no default in roles/{o.role}/defaults/main.yml"
    spec = load(role_file(o.role, "meta/argument_specs.yml"))["argument_specs"]["main"]["options"]
    assert row in spec, f"{row}: not in roles/{o.role}/meta/argument_specs.yml"
    assert spec[row]["type"] == rules().RULE_TYPES.get(o.rule, "str"), row
    assert spec[row].get("choices") == (
        list(rules().CHOICES[o.rule]) if o.rule in rules().CHOICES else None
    )
    if o.slurm:
        assert o.slurm in spec[row]["description"], f"{row}: the spec does not name {o.slurm}"
    if not (isinstance(defaults[row], str) and "{{" in defaults[row]):
        assert rules().reason(o.rule, defaults[row]) == "", f"{row}: its default breaks its rule"


def test_the_role_checks_and_renders_only_through_the_table() -> None:
    """The role names its options nowhere but in its defaults and specs: vars/main.yml derives
    the checked values and the #SBATCH lines from the table."""
    text = role_file("nodebook_job", "vars/main.yml").read_text()
    named = {o.variable for o in rules().OPTIONS if re.search(rf"\b{o.variable}\b", text)}
    assert named == set(), f"vars/main.yml names table rows itself: {sorted(named)}"


def helper_texts() -> dict[Path, str]:
    """The remote helper's bash, wherever its role keeps it."""
    texts = {}
    for path in paths.ROLES.glob("*/files/**/*"):
        if path.is_file() and path.suffix != ".py":
            text = path.read_text(errors="replace")
            if re.match(r"#!.*\bbash\b", text) or path.suffix == ".sh":
                texts[path] = text
    assert texts, "no helper found under roles/*/files"
    return texts


def case_words(pattern: str) -> list[tuple[Path, set[str]]]:
    found = []
    for path, text in helper_texts().items():
        for m in re.finditer(pattern, text):
            found.append((path, {w.strip(" '") for w in m.group(1).split("|")} - {""}))
    assert found, f"{pattern!r} not found in the helper"
    return found


def test_the_helpers_endpoints_are_the_tables() -> None:
    for path, words in case_words(r"case \$endpoint in ([^)]*)\)"):
        assert words == set(rules().ENDPOINTS), path


def test_the_helpers_waiting_states_are_the_drivers() -> None:
    """The helper decides what "waiting" means (its wait returns while the job is); the driver's
    progress.WAITING shows those states as pending, so it must name the same ones."""
    for path, words in case_words(r"is_waiting\(\) \{ case \$1 in ([^)]*)\)"):
        assert words == set(progress.WAITING), path


# --- a throwaway row flows everywhere the table is used ----------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of nodebook's Ansible side whose table has one more row, and nothing else new."""
    root = tmp_path_factory.mktemp("table") / "tree"
    root.mkdir()
    for name in ("playbooks", "roles", "plugins", "meta"):
        shutil.copytree(paths.DATA / name, root / name)
    for name in ("ansible.cfg", "galaxy.yml"):
        shutil.copy(paths.DATA / name, root / name)
    link = root / "collections" / "ansible_collections" / "nodebook"
    link.mkdir(parents=True)
    (link / "jupyter").symlink_to(root)
    plugin = root / "plugins" / "filter" / "nodebook.py"
    text = plugin.read_text()
    opening = "OPTIONS: tuple[Option, ...] = (\n"
    assert text.count(opening) == 1
    plugin.write_text(text.replace(opening, opening + ROW))
    return root


@pytest.fixture
def table(tree: Path, monkeypatch) -> ModuleType:
    """The copy's table, as the driver would load it."""
    spec = importlib.util.spec_from_file_location(
        "nodebook_rules_copy", tree / "plugins/filter/nodebook.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(options, "rules", lambda: module)
    return module


def test_a_new_row_is_a_command_line_option(table: ModuleType, capsys) -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["session", "--frobs", "3"])
    assert options.session_options(args).job == {"nodebook_job_frobs": "3"}
    with pytest.raises(NodebookError, match=r"--frobs 0: a whole number, at least 1"):
        options.session_options(parser.parse_args(["session", "--frobs", "0"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["session", "--frobs", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["session", "--help"])
    assert re.search(r"--frobs N\s+frobs for the job", capsys.readouterr().out)


def test_a_new_row_is_checked_and_submitted_by_the_driver(table: ModuleType) -> None:
    assert table.invalid({"nodebook_job_frobs": "x"}) == [
        "nodebook_job_frobs='x': a whole number, at least 1"
    ]
    args = table.submit_args({"nodebook_job_frobs": "3", "nodebook_scheduler": "slurm"})
    assert args[args.index("--") + 1 :] == ["--frobs=3"]
    # the driver reads it from the inventory too (driver/session.py: SBATCH_FLAGS, SUBMIT_KEYS)
    assert table.SBATCH_FLAGS["nodebook_job_frobs"] == "--frobs"


def playbook(tree: Path, play: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tree / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    }
    argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", play, *extra]
    argv += ["-e", f"ansible_python_interpreter={sys.executable}"]
    return subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


ROLE_PLAY = """\
- hosts: all
  gather_facts: false
  vars:
    nodebook_environment_base_path: {base}
    nodebook_environment_modules: []
    nodebook_jupyter_app: lab
    nodebook_jupyter_python: /opt/py/bin/python
    nodebook_jupyter_bin_dir: /opt/py/bin
    nodebook_job_test_with_sbatch: false
  tasks:
    - ansible.builtin.include_role:
        name: nodebook_job
        tasks_from: validate
        public: true
    - ansible.builtin.template:
        src: {tree}/roles/nodebook_job/templates/job.sbatch.j2
        dest: {base}/job.sbatch
        mode: "0600"
"""


@pytest.mark.slow
def test_a_new_row_is_validated_and_rendered_by_the_role(tree: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    play = tmp_path / "role.yml"
    play.write_text(ROLE_PLAY.format(base=base, tree=tree))
    bad = playbook(tree, str(play), "-e", "nodebook_job_frobs=x")
    assert bad.returncode != 0
    assert "nodebook_job: nodebook_job_frobs='x': a whole number, at least 1" in bad.stdout
    assert not (base / "job.sbatch").exists()
    good = playbook(tree, str(play), "-e", "nodebook_job_frobs=3")
    assert good.returncode == 0, good.stdout[-3000:]
    lines = (base / "job.sbatch").read_text().splitlines()
    assert "#SBATCH --frobs=3" in lines
    # and nothing else of the rendered options changed: the row came only from the table
    assert "#SBATCH --nodes=1" in lines and "#SBATCH --job-name=nodebook" in lines


FAKE_HELPER = """#!/bin/sh
printf '%s\\n' "$@" > "{out}"
exit 3
"""


@pytest.mark.slow
def test_a_new_row_reaches_the_helper_through_session_yml(tree: Path, tmp_path: Path) -> None:
    """The play hands the helper's submit the new option as the table's Slurm flag (a fake
    helper records its argv; tests/roles/test_option_flow.py does it for real)."""
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    out = tmp_path / "argv"
    helper = base / "bin" / "nodebook-remote"
    helper.write_text(FAKE_HELPER.format(out=out))
    helper.chmod(0o700)
    common = ["-e", f"nodebook_environment_base_dir={base}", "-e", "nodebook_scheduler=slurm"]
    bad = playbook(tree, "playbooks/session.yml", *common, "-e", "nodebook_job_frobs=x")
    assert bad.returncode != 0
    assert "nodebook_job_frobs='x': a whole number, at least 1" in bad.stdout
    assert not out.exists()  # refused before the helper ran
    run = playbook(tree, "playbooks/session.yml", *common, "-e", "nodebook_job_frobs=3")
    assert run.returncode != 0  # the fake helper fails the submit, after recording it
    argv = out.read_text().splitlines()
    assert "submit" in argv and argv[argv.index("--") + 1 :] == ["--frobs=3"], argv
