"""`nodebook init` without a cluster: the probe's lines -> proposals -> the commented file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from driver import init
from driver.cli import build_parser
from driver.errors import ExitCode, NodebookError
from driver.progress import Renderer
from driver.remote import Reply, parse_lines

DISCOVER = """\
Welcome to the cluster (a login banner)
{"nodebook": "host", "host": "login.hpc", "user": "jdoe", "home": "/home/jdoe", "platform": "Linux-x86_64"}
{"nodebook": "scheduler", "name": "slurm", "ok": true}
{"nodebook": "partition", "name": "short", "default": true, "max_time": "30:00", "default_time": "10:00", "state": "up"}
{"nodebook": "partition", "name": "gpu", "default": false, "max_time": "2-00:00:00", "default_time": "1:00:00", "state": "up"}
{"nodebook": "python", "module": "", "python": "/usr/bin/python3", "version": "3.6.8", "implementation": "cpython", "libc": "glibc-2.17"}
{"nodebook": "python", "module": "python/3.10", "python": "/sw/py310/bin/python3", "version": "3.10.4", "implementation": "cpython", "libc": "glibc-2.17"}
{"nodebook": "python", "module": "miniforge/24.1", "python": "/sw/mf/bin/python3", "version": "3.12.1", "implementation": "cpython", "libc": "glibc-2.17"}
{"nodebook": "python", "module": "python/2.7", "python": "/sw/py27/bin/python", "version": "2.7.18", "implementation": "cpython", "libc": "glibc-2.17"}
{"nodebook": "module", "name": "python/3.12", "exists": false, "close": ["python/3.10", "python/2.7"]}
{"nodebook": "module", "name": "cuda/12.4", "exists": true, "python": "", "version": ""}
{"nodebook": "index", "url": "https://pypi.org/simple/pip/", "reachable": false}
"""  # noqa: E501


def found(text: str = DISCOVER) -> init.Found:
    return init.parse_discover(Reply(0, parse_lines(text)))


def test_the_probe_lines_are_read_and_a_banner_is_ignored():
    f = found()
    assert (f.host, f.user, f.scheduler) == ("login.hpc", "jdoe", "slurm")
    assert [p.name for p in f.partitions] == ["short", "gpu"]
    assert f.partitions[0].default and f.partitions[0].max_seconds() == 1800
    assert f.index_reachable is False
    assert {p.module for p in f.pythons} == {"", "python/3.10", "miniforge/24.1", "python/2.7"}


def test_the_newest_module_is_proposed_and_too_old_pythons_are_not():
    names = [p.module for p in init.usable(found())]
    assert names == ["miniforge/24.1", "python/3.10"]  # 3.6.8 and 2.7 are below 3.9


def test_a_missing_module_is_refused_with_close_matches():
    with pytest.raises(NodebookError) as err:
        init.check_module("python/3.12", found())
    assert err.value.code == ExitCode.USAGE
    assert "module python/3.12 does not exist on login.hpc" in err.value.message
    assert "close matches: python/3.10" in err.value.message
    assert "--module" in err.value.message


def test_a_module_without_python_and_a_too_old_one_are_refused():
    with pytest.raises(NodebookError, match="puts no Python of its own"):
        init.check_module("cuda/12.4", found())
    with pytest.raises(NodebookError, match=r"Python 2\.7\.18 .*older than 3\.9"):
        init.check_module("python/2.7", found())
    with pytest.raises(NodebookError, match=r"login shell's python3 on login.hpc is Python 3\.6"):
        init.check_module("none", found())


def test_time_is_capped_at_the_partition_limit_and_checked():
    short, gpu = found().partitions
    assert init.propose_time(short) == "00:30:00"
    assert init.propose_time(gpu) == "01:00:00"  # the role's default, under the limit
    assert init.check_time("01:30:00", gpu) == "01:30:00"
    with pytest.raises(NodebookError, match="longer than partition short's limit 30:00"):
        init.check_time("01:00:00", short)
    with pytest.raises(NodebookError, match="HH:MM:SS"):
        init.check_time("2h", short)


def test_a_partition_that_does_not_exist_gets_close_matches():
    with pytest.raises(NodebookError, match=r"no partition shrt .*close matches: short"):
        init.check_partition("shrt", found())


def choices(**kw) -> init.Choices:
    f = found()
    base = dict(
        name="hpc",
        host="login.hpc",
        user="jdoe",
        python=init.check_module("miniforge/24.1", f),
        partition=f.partitions[0],
        time="00:30:00",
    )
    base.update(kw)
    return init.Choices(**base)


def hostvars(text: str, name: str = "hpc") -> dict:
    data = yaml.safe_load(text)
    for group in data["all"]["children"].values():
        if name in group["hosts"]:
            return group["hosts"][name]
    raise AssertionError(text)


def test_the_file_holds_the_roles_variables_each_with_a_comment():
    text = init.render(choices(), found(), today="2026-01-02")
    assert hostvars(text) == {
        "ansible_host": "login.hpc",
        "ansible_user": "jdoe",
        "nodebook_environment_module": "miniforge/24.1",
        "nodebook_job_partition": "short",
        "nodebook_job_time": "00:30:00",
    }
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("ansible_", "nodebook_")):
            assert lines[i - 1].strip().startswith("#"), f"no comment above {stripped}"
    assert "Python 3.12.1 (cpython, glibc-2.17)" in text
    assert "Also found: module python/3.10." in text
    assert "cannot reach https://pypi.org/simple/" in text  # the offline path is explained


def test_a_standalone_server_an_index_and_an_ssh_config_are_written():
    reply = DISCOVER.replace('"name": "slurm"', '"name": "none"').replace(
        '"reachable": false', '"reachable": true'
    )
    f = found(reply)
    c = choices(
        partition=None,
        time="",
        ssh_config="/home/jdoe/.ssh/hpc.conf",
        index_url="http://mirror.hpc:3141/simple/",
    )
    hv = hostvars(init.render(c, f))
    assert hv["nodebook_scheduler"] == "none"
    assert "nodebook_job_partition" not in hv
    assert hv["ansible_ssh_common_args"] == "-F /home/jdoe/.ssh/hpc.conf"
    assert hv["nodebook_jupyter_pip_index_url"] == "http://mirror.hpc:3141/simple/"
    assert hv["nodebook_jupyter_pip_trusted_hosts"] == ["mirror.hpc"]


def test_quoting_survives_odd_values():
    text = init.render(choices(user='we"ird: user #1'), found())
    assert hostvars(text)["ansible_user"] == 'we"ird: user #1'


def test_bad_names_and_an_existing_file_are_refused_before_any_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    parser = build_parser()
    out = Renderer(True, __import__("io").StringIO())

    def run(*argv: str) -> NodebookError:
        args = parser.parse_args(["init", *argv])
        with pytest.raises(NodebookError) as err:
            init.init(args, out)
        return err.value

    assert run("all", "--host", "h", "--yes").code == ExitCode.USAGE
    assert run("a b", "--host", "h", "--yes").code == ExitCode.USAGE
    target = tmp_path / "nodebook" / "inventory" / "hpc.yml"
    target.parent.mkdir(parents=True)
    target.write_text("---\n")
    err = run("hpc", "--host", "h", "--yes")
    assert err.code == ExitCode.USAGE and "pass --force" in err.message
    assert target.read_text() == "---\n"  # untouched
    other = target.with_name("other.yml")
    other.write_text(yaml.safe_dump({"all": {"hosts": {"dup": {"ansible_host": "x"}}}}))
    err = run("dup", "--host", "h", "--yes")
    assert "already defined in" in err.message and str(other) in err.message


def test_write_file_is_private_and_leaves_other_clusters_alone(tmp_path):
    first = tmp_path / "inv" / "one.yml"
    init.write_file(first, "---\none: 1\n")
    before = first.read_bytes(), first.stat().st_mtime_ns
    init.write_file(tmp_path / "inv" / "two.yml", "---\ntwo: 2\n")
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "inv").stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in (tmp_path / "inv").iterdir()) == ["one.yml", "two.yml"]


def test_every_subcommand_help_has_examples_and_every_option_help_text():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"init", "session", "setup", "attach", "list", "stop", "doctor"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert "examples:" in (p.epilog or ""), name
        for action in p._actions:
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"


def test_the_json_report_carries_what_was_found():
    buf = __import__("io").StringIO()
    init.report(found(), Renderer(True, buf))
    (line,) = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert line["data"]["found"]["scheduler"] == "slurm"
    assert line["data"]["found"]["index"]["reachable"] is False
    assert Path(init.index_base("https://pypi.org/simple/pip/")).name == "simple"


ACCOUNTS = """\
{"nodebook": "partition", "name": "chem", "default": false, "max_time": "8:00:00", "default_time": "1:00:00", "state": "up", "allow_accounts": "chemistry"}
{"nodebook": "account", "name": "physics", "default": true}
{"nodebook": "account", "name": "chemistry", "default": false}
"""  # noqa: E501


def test_accounts_and_what_each_partition_admits_are_read():
    f = found(DISCOVER + ACCOUNTS)
    short, _, chem = f.partitions
    assert (f.accounts, f.default_account) == (["physics", "chemistry"], "physics")
    assert short.allow_accounts == () and short.admits("anything")
    assert chem.allow_accounts == ("chemistry",) and not chem.admits("physics")
    assert found().accounts == []  # a cluster without accounting: nothing to propose


def test_an_account_is_proposed_where_sessions_need_one():
    f = found(DISCOVER + ACCOUNTS)
    short, _, chem = f.partitions
    # several accounts: Slurm would charge the default one without asking, so init asks
    assert init.account_needed(short, f) and init.propose_account(short, f) == "physics"
    # the partition does not admit the default account: the one of the user's it admits
    assert init.account_needed(chem, f) and init.propose_account(chem, f) == "chemistry"
    one = found(DISCOVER + ACCOUNTS)
    one.accounts = ["physics"]
    assert not init.account_needed(one.partitions[0], one)  # one account, an open partition
    assert init.account_needed(one.partitions[2], one)  # ... but chem does not admit it
    assert not init.account_needed(short, found())  # no accounting: nothing known


def test_an_account_or_partition_the_user_cannot_use_is_refused_with_the_fix():
    f = found(DISCOVER + ACCOUNTS)
    chem = f.partitions[2]
    with pytest.raises(NodebookError, match=r"admits only the account chemistry, not physics: "):
        init.check_account("physics", chem, f)
    with pytest.raises(NodebookError, match=r"account biology is not one of yours .*physics, "):
        init.check_account("biology", chem, f)
    assert init.check_account("chemistry", chem, f) == "chemistry"
    bob = found(DISCOVER + ACCOUNTS)
    bob.accounts = ["physics"]
    with pytest.raises(NodebookError, match=r"partition chem admits only the account chemistry, "
                       r"none of yours \(physics\): pick another with --partition"):  # fmt: skip
        init.check_partition("chem", bob)


def test_the_account_is_written_with_the_users_accounts_and_the_partitions_rule():
    f = found(DISCOVER + ACCOUNTS)
    text = init.render(choices(partition=f.partitions[2], account="chemistry"), f)
    assert hostvars(text)["nodebook_job_account"] == "chemistry"
    assert "yours: physics (default), chemistry." in text
    assert "chem admits only the account chemistry." in text
    assert "chem (max 8:00:00, accounts chemistry)" in text
    assert "nodebook_job_account" not in hostvars(init.render(choices(), found()))
