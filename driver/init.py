"""``nodebook init NAME --host HOST``: probe a cluster once and write its inventory file.

One ssh master to HOST (as ``~/.ssh/config`` has it: a password or a code is asked once, an
unknown host key is shown and asked about by ssh itself, never accepted blindly), one round
trip of the remote helper's ``discover`` (scheduler, partitions and their time limits, the
Python-like modules and their Pythons, the user's Slurm accounts and which partitions admit them,
whether the login node reaches the package index), then proposals the user confirms (or
``--yes``), and one commented YAML file per cluster in the user's inventory directory: ``init``
for a second cluster touches nothing of the first.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from driver.errors import ExitCode, NodebookError
from driver.paths import rules, user_inventory_dir
from driver.progress import Renderer, Update

if TYPE_CHECKING:  # the probe's modules: imported by `init` itself, not by every command's parser
    from driver.remote import Reply

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = ("all", "ungrouped", "localhost")
PYPI_PAGE = "https://pypi.org/simple/pip/"
# A host that does not answer fails the probe in bounded time (the login itself may take as
# long as the user types: ConnectTimeout covers only the TCP connection and ssh's banner).
CONNECT_TIMEOUT = 15
NO_MODULE = ("", "none", "-")


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    max_time: str
    default_time: str
    state: str
    allow_accounts: tuple[str, ...] = ()  # Slurm's AllowAccounts; empty: every account

    def admits(self, account: str) -> bool:
        return not self.allow_accounts or account in self.allow_accounts

    def max_seconds(self) -> int | None:
        """The partition's MaxTime in seconds (None: unlimited or unreadable)."""
        try:
            return int(rules().slurm_seconds(self.max_time))
        except ValueError:
            return None


@dataclass(frozen=True)
class PythonFound:
    module: str  # "" for the login shell's python3
    python: str
    version: str
    implementation: str = ""
    libc: str = ""

    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", self.version)[:3])

    def describe(self) -> str:
        extra = ", ".join(p for p in (self.implementation, self.libc) if p)
        return f"Python {self.version}" + (f" ({extra})" if extra else "")


@dataclass
class Found:
    """What ``discover`` reported about the cluster."""

    host: str = ""
    user: str = ""
    platform: str = ""
    scheduler: str = "none"
    scheduler_ok: bool = True
    scheduler_detail: str = ""
    partitions: list[Partition] = field(default_factory=list)
    pythons: list[PythonFound] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)  # the --module lines
    accounts: list[str] = field(default_factory=list)  # the user's Slurm accounts (none known:
    default_account: str = ""  # no accounting database to ask)
    index_url: str = PYPI_PAGE
    index_reachable: bool | None = None


def parse_discover(reply: Reply) -> Found:
    """The discover lines as a Found (pure; unit-tested)."""
    found = Found()
    host = reply.first("host") or {}
    found.host = str(host.get("host") or "")
    found.user = str(host.get("user") or "")
    found.platform = str(host.get("platform") or "")
    sched = reply.first("scheduler") or {}
    found.scheduler = str(sched.get("name") or "none")
    found.scheduler_ok = sched.get("ok") is not False
    found.scheduler_detail = str(sched.get("detail") or "")
    for p in reply.of("partition"):
        found.partitions.append(
            Partition(
                name=str(p.get("name")),
                default=p.get("default") is True,
                max_time=str(p.get("max_time") or ""),
                default_time=str(p.get("default_time") or ""),
                state=str(p.get("state") or ""),
                allow_accounts=tuple(
                    a for a in str(p.get("allow_accounts") or "ALL").split(",") if a != "ALL"
                ),
            )
        )
    for a in reply.of("account"):
        found.accounts.append(str(a.get("name")))
        if a.get("default") is True:
            found.default_account = str(a.get("name"))
    for p in reply.of("python"):
        if p.get("version"):
            found.pythons.append(
                PythonFound(
                    module=str(p.get("module") or ""),
                    python=str(p.get("python") or ""),
                    version=str(p.get("version")),
                    implementation=str(p.get("implementation") or ""),
                    libc=str(p.get("libc") or ""),
                )
            )
    for m in reply.of("module"):
        found.modules[str(m.get("name"))] = m
    index = reply.first("index") or {}
    found.index_url = str(index.get("url") or PYPI_PAGE)
    reachable = index.get("reachable")
    found.index_reachable = reachable if isinstance(reachable, bool) else None
    return found


def min_python() -> tuple[int, ...]:
    text = str(rules().default("nodebook_environment_python_min_version"))
    return tuple(int(p) for p in text.split("."))


def usable(found: Found) -> list[PythonFound]:
    """Pythons new enough for Jupyter: modules first (newest first), then the login shell's."""
    ok = [p for p in found.pythons if p.version_tuple() >= min_python()]
    modules = sorted((p for p in ok if p.module), key=lambda p: p.version_tuple(), reverse=True)
    return modules + [p for p in ok if not p.module]


def close_matches(name: str, found: Found) -> list[str]:
    """Modules like ``name``: what the helper found among all modules, then difflib's."""
    helper = found.modules.get(name, {}).get("close") or []
    candidates = [p.module for p in found.pythons if p.module]
    guessed = difflib.get_close_matches(name, candidates, n=5, cutoff=0.4)
    out: list[str] = []
    for m in [*helper, *guessed]:
        if str(m) not in out:
            out.append(str(m))
    return out


def check_module(name: str, found: Found) -> PythonFound:
    """The Python a module choice gives; NodebookError (cause, close matches, fix) if none."""
    low = min_python()
    need = ".".join(map(str, low))
    if name in NO_MODULE:
        system = next((p for p in found.pythons if not p.module), None)
        if system is None or system.version_tuple() < low:
            what = f"is Python {system.version}" if system else "does not exist"
            raise NodebookError(
                f"the login shell's python3 on {found.host} {what}; Jupyter needs {need} or "
                f"newer: pass --module with a module that provides it ({_choices(found)})",
                ExitCode.USAGE,
            )
        return system
    for p in found.pythons:
        if p.module == name:
            if p.version_tuple() < low:
                raise NodebookError(
                    f"module {name} gives {p.describe()}, older than {need}: pick a newer one "
                    f"with --module ({_choices(found)})",
                    ExitCode.USAGE,
                )
            return p
    line = found.modules.get(name)
    if line is not None and line.get("exists") and line.get("version"):
        p = PythonFound(
            name,
            str(line.get("python")),
            str(line.get("version")),
            str(line.get("implementation") or ""),
            str(line.get("libc") or ""),
        )
        if p.version_tuple() >= low:
            return p
        raise NodebookError(
            f"module {name} gives {p.describe()}, older than {need}: pick a newer one with "
            f"--module ({_choices(found)})",
            ExitCode.USAGE,
        )
    if line is not None and line.get("exists"):
        raise NodebookError(
            f"module {name} loads on {found.host} but puts no Python of its own on PATH: pick "
            f"a module that provides Python {need}+ with --module ({_choices(found)})",
            ExitCode.USAGE,
        )
    close = close_matches(name, found)
    hint = f"close matches: {', '.join(close)}" if close else f"Python modules: {_choices(found)}"
    raise NodebookError(
        f"module {name} does not exist on {found.host or 'the login node'} (`module -t avail`); "
        f"{hint}: pass one of them with --module",
        ExitCode.USAGE,
    )


def _choices(found: Found) -> str:
    names = [p.module or '"" (the login shell\'s python3)' for p in usable(found)]
    return ", ".join(names) or "none found: ask the cluster's admins which module has Python"


def check_partition(name: str, found: Found) -> Partition:
    for p in found.partitions:
        if p.name == name:
            if found.accounts and not any(p.admits(a) for a in found.accounts):
                raise NodebookError(
                    f"partition {name} admits only {_accounts_phrase(p)}, none of yours "
                    f"({', '.join(found.accounts)}): pick another with --partition, or ask the "
                    "cluster's admins for one of those accounts",
                    ExitCode.USAGE,
                )
            return p
    names = [p.name for p in found.partitions]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    hint = f"close matches: {', '.join(close)}; " if close else ""
    raise NodebookError(
        f"no partition {name} on {found.host} (sinfo); {hint}pick one of "
        f"{', '.join(names) or '(none)'} with --partition",
        ExitCode.USAGE,
    )


def _accounts_phrase(p: Partition) -> str:
    many = len(p.allow_accounts) > 1
    return f"the account{'s' if many else ''} {', '.join(p.allow_accounts)}"


def account_needed(partition: Partition | None, found: Found) -> bool:
    """Sessions must name an account: the partition does not admit the user's default one, or
    the user has several to choose from (Slurm would charge the default without asking)."""
    if partition is None or not found.accounts:
        return False
    return len(found.accounts) > 1 or not partition.admits(found.default_account)


def propose_account(partition: Partition | None, found: Found) -> str:
    """The user's default account when the partition admits it, else the first of theirs it
    admits ("" when Slurm keeps no accounts to ask)."""
    ok = [a for a in found.accounts if partition is None or partition.admits(a)]
    if found.default_account in ok:
        return found.default_account
    return ok[0] if ok else ""


def check_account(value: str, partition: Partition | None, found: Found) -> str:
    """An account sessions may use on the partition; NodebookError (cause and fix) if not."""
    why = rules().reason("name", value)
    if why:
        raise NodebookError(f"--account {value!r}: {why}", ExitCode.USAGE)
    if found.accounts and value not in found.accounts:
        raise NodebookError(
            f"account {value} is not one of yours on {found.host} "
            f"({', '.join(found.accounts)}): pass one of them with --account",
            ExitCode.USAGE,
        )
    if partition is not None and not partition.admits(value):
        ok = [a for a in found.accounts if partition.admits(a)]
        fix = f"pass --account {ok[0]}" if ok else "pick another --partition"
        raise NodebookError(
            f"partition {partition.name} admits only {_accounts_phrase(partition)}, not "
            f"{value}: {fix}",
            ExitCode.USAGE,
        )
    return value


def hms(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def propose_time(partition: Partition | None) -> str:
    """The role's default time limit, capped at the partition's maximum."""
    default = str(rules().default("nodebook_job_time"))
    limit = partition.max_seconds() if partition else None
    wanted = int(rules().slurm_seconds(default))
    return hms(min(wanted, limit)) if limit else default


def check_time(value: str, partition: Partition | None) -> str:
    why = rules().reason("time", value)
    if why:
        raise NodebookError(f"--time {value!r}: {why}", ExitCode.USAGE)
    limit = partition.max_seconds() if partition else None
    if limit and rules().slurm_seconds(value) > limit:
        raise NodebookError(
            f"--time {value} is longer than partition {partition and partition.name}'s "
            f"limit {partition and partition.max_time}: ask for at most that",
            ExitCode.USAGE,
        )
    return value


# ------------------------------------------------------------------------------------ file


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value)


def index_base(page: str) -> str:
    """The index URL pip takes, from the probed project page (…/simple/pip/ -> …/simple/)."""
    return page[: -len("pip/")] if page.endswith("/pip/") else page


@dataclass
class Choices:
    name: str
    host: str
    user: str
    python: PythonFound
    partition: Partition | None = None
    time: str = ""
    account: str = ""  # written when sessions must name one (account_needed) or it was given
    ssh_config: str = ""
    index_url: str = ""  # given to init: pip installs from it (else pip's default, PyPI)


def render(c: Choices, found: Found, today: str | None = None) -> str:
    """The commented inventory file for one cluster (pure; unit-tested)."""
    today = today or time.strftime("%Y-%m-%d")
    standalone = found.scheduler == "none"
    group = "standalone_servers" if standalone else "slurm_clusters"
    i = " " * 10
    lines = [
        "---",
        f"# nodebook inventory for the cluster {c.name!r}, written by `nodebook init` on {today}",
        f"# from what {found.host or c.host} reported. One file per cluster; edit it freely",
        f"# (`nodebook init {c.name} --host {c.host} --force` writes it again). Every variable",
        "# is described in the roles' READMEs (roles/nodebook_*/README.md).",
        "all:",
        "  children:",
        f"    {group}:",
        "      hosts:",
        f"        {c.name}:",
        f"{i}# The login node, as ssh knows it: your ~/.ssh/config applies (User, ProxyJump,",
        f"{i}# IdentityFile, ControlMaster ...), and host keys are checked as ssh always does.",
        f"{i}ansible_host: {_q(c.host)}",
        f"{i}# Your user name on the cluster.",
        f"{i}ansible_user: {_q(c.user)}",
    ]
    if c.ssh_config:
        lines += [
            f"{i}# The ssh config file every connection reads (given to `nodebook init`).",
            f"{i}ansible_ssh_common_args: {_q('-F ' + c.ssh_config)}",
        ]
    if standalone:
        lines += [
            f"{i}# No Slurm here (no sinfo/squeue in a login shell): Jupyter runs on this host",
            f"{i}# itself, and sessions use `--tunnel direct`.",
            f'{i}nodebook_scheduler: "none"',
        ]
    p = c.python
    others = [
        f"module {q.module}" if q.module else "the login shell's python3"
        for q in usable(found)
        if q.module != p.module
    ]
    if p.module:
        lines += [
            f"{i}# The environment module that provides {p.describe()}:",
            f"{i}# setup and every job run `module load {p.module}` in a login shell.",
        ]
    else:
        lines += [
            f"{i}# No module: the login shell's {p.python} ({p.describe()}) runs Jupyter.",
        ]
    lines.append(
        f"{i}# Also found: {', '.join(others)}." if others else f"{i}# No other Python found."
    )
    lines.append(f"{i}nodebook_environment_module: {_q(p.module)}")
    if not standalone and c.partition is not None:
        parts = ", ".join(
            f"{q.name} ({'default, ' if q.default else ''}max {q.max_time}"
            f"{', accounts ' + ' '.join(q.allow_accounts) if q.allow_accounts else ''})"
            for q in found.partitions
        )
        lines += [
            f"{i}# The partition sessions use (`nodebook session --partition P` overrides it).",
            f"{i}# Partitions: {parts}.",
            f"{i}nodebook_job_partition: {_q(c.partition.name)}",
            f"{i}# Sessions' time limit (`--time` overrides it); {c.partition.name} allows "
            f"{c.partition.max_time}.",
            f"{i}nodebook_job_time: {_q(c.time)}",
        ]
        if c.account:
            yours = ", ".join(
                f"{a} (default)" if a == found.default_account else a for a in found.accounts
            )
            lines.append(
                f"{i}# The Slurm account sessions are charged to (`--account` overrides it)"
                + (f"; yours: {yours}." if yours else ".")
            )
            if c.partition.allow_accounts:
                lines.append(
                    f"{i}# {c.partition.name} admits only {_accounts_phrase(c.partition)}."
                )
            lines.append(f"{i}nodebook_job_account: {_q(c.account)}")
    index = index_base(found.index_url)
    if found.index_reachable:
        lines.append(f"{i}# The login node reaches {index}: setup's pip installs from it.")
    elif found.index_reachable is False:
        lines += [
            f"{i}# The login node cannot reach {index}: setup downloads the wheels on this",
            f'{i}# machine and uploads them (nodebook_jupyter_offline: "auto").',
        ]
    else:
        lines.append(f"{i}# Whether the login node reaches {index} is unknown (no curl there).")
    if c.index_url:
        lines += [
            f"{i}# The package index pip uses on the cluster.",
            f"{i}nodebook_jupyter_pip_index_url: {_q(c.index_url)}",
        ]
        scheme_host = urlsplit(c.index_url)
        if scheme_host.scheme == "http" and scheme_host.hostname:
            lines += [
                f"{i}# Plain http: pip must be told to trust the host.",
                f"{i}nodebook_jupyter_pip_trusted_hosts: [{_q(scheme_host.hostname)}]",
            ]
    return "\n".join(lines) + "\n"


def other_files_with_host(directory: Path, name: str, own: Path) -> list[Path]:
    """Other inventory files of the directory that already define host ``name``."""
    import yaml

    def hosts(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "hosts" and isinstance(value, dict):
                    found |= {str(h) for h in value}
                found |= hosts(value)
        return found

    clash = []
    for path in sorted(directory.glob("*.y*ml")):
        if path == own:
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if name in hosts(data):
            clash.append(path)
    return clash


def write_file(path: Path, text: str) -> None:
    """Write atomically, 0600, in a 0700 directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ asking


Ask = Callable[[str, str], str]


def terminal_ask(question: str, default: str) -> str:
    """One question on the terminal; Enter takes the default."""
    answer = input(f"{question} [{default}]: " if default else f"{question}: ").strip()
    return answer or default


def ssh_user(host: str, ssh_args: list[str]) -> str:
    """The user ssh would log in as (``ssh -G``: the config's User, else the local user)."""
    try:
        proc = subprocess.run(
            ["ssh", *ssh_args, "-G", host],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is not None and proc.returncode == 0:
        for line in proc.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "user" and value:
                return value
    import getpass

    return getpass.getuser()


def _answer(
    ask: Ask | None, question: str, default: str, check: Callable[[str], Any], given: str | None
) -> str:
    """A given value (checked), else the user's answer (asked again when it is wrong)."""
    if given is not None:
        check(given)
        return given
    if ask is None:
        check(default)
        return default
    while True:
        value = ask(question, default)
        try:
            check(value)
            return value
        except NodebookError as exc:
            print(f"  {exc.message}", file=sys.stderr)


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The ``init`` subcommand's options (registered by driver.cli)."""
    p = sub.add_parser(
        "init",
        help="probe a cluster once and write its inventory file",
        description=(
            "Probe a cluster over one ssh connection (a password or code is asked once) and "
            "write a commented inventory file for it, one file per cluster in "
            f"{user_inventory_dir()}."
        ),
        epilog=INIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="a short name for the cluster (the file's name)")
    p.add_argument(
        "--host",
        required=True,
        metavar="HOST",
        help="the login node, as you would `ssh` to it (a name from ~/.ssh/config works)",
    )
    p.add_argument("--user", metavar="USER", help="your user name there (default: ssh's)")
    p.add_argument(
        "--module",
        metavar="MODULE",
        help='the environment module that provides Python 3.9+ ("" or none: the login '
        "shell's python3; default: the newest Python module found)",
    )
    p.add_argument(
        "--partition", metavar="NAME", help="sessions' partition (default: the cluster's default)"
    )
    p.add_argument(
        "--time",
        metavar="TIME",
        help="sessions' time limit, HH:MM:SS (default: 01:00:00, capped at the partition's limit)",
    )
    p.add_argument(
        "--account",
        metavar="NAME",
        help="the Slurm account sessions are charged to (asked when you have several, or when "
        "the partition does not admit your default one)",
    )
    p.add_argument(
        "--index-url",
        metavar="URL",
        help="a package index the cluster uses instead of PyPI (for example a local mirror)",
    )
    p.add_argument(
        "--ssh-config",
        metavar="FILE",
        help="an ssh config file to use instead of ~/.ssh/config (written into the inventory)",
    )
    p.add_argument("--yes", action="store_true", help="take every proposal without asking")
    p.add_argument("--force", action="store_true", help="replace the cluster's file if it exists")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


INIT_EXAMPLES = """\
examples:
  nodebook init mycluster --host login.cluster.example.org
                                  probe, propose, ask; writes mycluster.yml in the inventory dir
  nodebook init hpc2 --host hpc2 --user jdoe --module python/3.11 --partition gpu --yes
                                  no questions: every answer given (or proposed)
  nodebook init lab --host workstation --yes
                                  a server without Slurm: written as nodebook_scheduler "none"
  nodebook init offline --host login --index-url https://pypi.internal.example.org/simple/
                                  a cluster that installs from its own mirror

then: nodebook setup --cluster NAME, and nodebook session --cluster NAME
"""


# ------------------------------------------------------------------------------ command


def init(args: argparse.Namespace, out: Renderer, ask: Ask | None = None) -> ExitCode:
    """Probe the cluster, propose, ask (unless --yes), write the inventory file."""
    name, host = str(args.name), str(args.host)
    if not NAME_RE.match(name) or name in RESERVED:
        raise NodebookError(
            f"init: {name!r} cannot name a cluster: use letters, digits, '.', '_' and '-' "
            f"(not {', '.join(RESERVED)})",
            ExitCode.USAGE,
        )
    interactive = not args.yes and not args.json
    if interactive and not sys.stdin.isatty():
        raise NodebookError(
            "init: no terminal to ask on: pass --yes (and --user, --module, --partition to "
            "choose other values than the proposals)",
            ExitCode.USAGE,
        )
    if interactive and ask is None:
        ask = terminal_ask
    if not interactive:
        ask = None
    directory = user_inventory_dir()
    path = directory / f"{name}.yml"
    if path.exists() and not args.force and not _yes(ask, f"{path} exists; replace it?"):
        raise NodebookError(
            f"init: {path} exists: pass --force to replace it, or pick another NAME",
            ExitCode.USAGE,
        )
    clash = other_files_with_host(directory, name, path) if directory.is_dir() else []
    if clash:
        raise NodebookError(
            f"init: host {name} is already defined in {clash[0]}: pick another NAME",
            ExitCode.USAGE,
        )
    ssh_args: list[str] = []
    if args.ssh_config:
        cfg = Path(args.ssh_config).expanduser().resolve()
        if not cfg.is_file():
            raise NodebookError(f"init: --ssh-config {cfg} does not exist", ExitCode.USAGE)
        ssh_args = ["-F", str(cfg)]
    if args.index_url and urlsplit(args.index_url).scheme not in ("http", "https"):
        raise NodebookError(
            f"init: --index-url {args.index_url!r}: give an http(s) URL such as "
            "https://pypi.internal.example.org/simple/",
            ExitCode.USAGE,
        )
    user = _answer(
        ask, f"User on {host}", ssh_user(host, ssh_args), lambda u: _check_user(u), args.user
    )
    from driver.inventory import Cluster
    from driver.remote import Remote
    from driver.ssh import Master, cleanup_dir, make_control_dir

    cluster = Cluster(
        name=name,
        inventory=path,
        host=host,
        user=user,
        ssh_args=(*ssh_args, "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"),
    )
    out.emit(Update("info", message=f"connecting to {user}@{host} ..."))
    page = args.index_url.rstrip("/") + "/pip/" if args.index_url else PYPI_PAGE
    discover = ["discover", "--index", page]
    if args.module and args.module not in NO_MODULE:
        discover += ["--module", args.module]
    master = Master(cluster, make_control_dir())
    try:
        master.start()
        reply = Remote(master, cluster).piped(*discover, timeout=120)
    finally:
        master.close()
        cleanup_dir(master.control_dir)
    if reply.rc == 255 and not reply.lines:
        raise NodebookError(
            f"lost the ssh connection to {host} while probing: "
            f"{(reply.stderr.strip().splitlines() or ['no answer'])[-1]}; retry",
            ExitCode.SSH,
        )
    if reply.error is not None or reply.first("host") is None:
        why = (reply.error or {}).get("message") or (
            reply.stderr.strip().splitlines() or ["no answer"]
        )[-1]
        raise NodebookError(f"the probe on {host} failed: {why}")
    found = parse_discover(reply)
    report(found, out)

    candidates = usable(found)
    if args.module is None and not candidates:
        raise NodebookError(
            f"no Python {'.'.join(map(str, min_python()))} or newer on {host}: no Python-like "
            "module (python, conda, anaconda, miniforge) and no new enough python3 in a login "
            "shell; ask the cluster's admins which module provides Python, then pass --module",
        )
    default_module = candidates[0].module if candidates else ""
    module = _answer(
        ask,
        "Python module (none: the login shell's python3)",
        default_module or "none",
        lambda m: check_module(m, found),
        args.module,
    )
    python = check_module(module, found)
    partition: Partition | None = None
    job_time = account = ""
    if found.scheduler == "slurm":
        if not found.scheduler_ok:
            raise NodebookError(
                f"Slurm does not answer on {host} ({found.scheduler_detail}): retry when "
                "`sinfo` works there"
            )
        if not found.partitions:
            raise NodebookError(f"sinfo on {host} lists no partition: ask the cluster's admins")
        default_part = next((p for p in found.partitions if p.default), found.partitions[0])
        part_name = _answer(
            ask,
            "Partition",
            default_part.name,
            lambda n: check_partition(n, found),
            args.partition,
        )
        partition = check_partition(part_name, found)
        chosen = partition
        job_time = _answer(
            ask,
            f"Time limit (max {partition.max_time})",
            propose_time(partition),
            lambda t: check_time(t, chosen),
            args.time,
        )
        if args.account is not None or account_needed(partition, found):
            account = _answer(
                ask,
                f"Slurm account ({', '.join(found.accounts)})"
                if found.accounts
                else "Slurm account",
                propose_account(partition, found),
                lambda a: check_account(a, chosen, found),
                args.account,
            )
    elif args.partition or args.account:
        raise NodebookError(
            f"init: {host} has no Slurm, so --partition and --account do not apply",
            ExitCode.USAGE,
        )
    choices = Choices(
        name=name,
        host=host,
        user=user,
        python=python,
        partition=partition,
        time=job_time,
        account=account,
        ssh_config=ssh_args[1] if ssh_args else "",
        index_url=args.index_url or "",
    )
    write_file(path, render(choices, found))
    out.emit(
        Update(
            "info",
            message=(
                f"wrote {path}\nnext: nodebook setup --cluster {name}   "
                f"(then: nodebook session --cluster {name})"
            ),
            data={
                "path": str(path),
                "cluster": name,
                "values": {
                    "ansible_host": host,
                    "ansible_user": user,
                    "nodebook_environment_module": python.module,
                    "nodebook_scheduler": found.scheduler,
                    "nodebook_job_partition": partition.name if partition else None,
                    "nodebook_job_time": job_time or None,
                    "nodebook_job_account": account or None,
                },
                "python": python.version,
                "index_reachable": found.index_reachable,
            },
        )
    )
    return ExitCode.OK


def _yes(ask: Ask | None, question: str) -> bool:
    return ask is not None and ask(f"{question} (yes/no)", "no").lower() in ("y", "yes")


def _check_user(user: str) -> None:
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", user):
        raise NodebookError(f"init: {user!r} is not a user name", ExitCode.USAGE)


def report(found: Found, out: Renderer) -> None:
    """What the probe found, a few lines (and one JSON line with all of it)."""
    lines = [f"{found.user}@{found.host} ({found.platform})"]
    if found.scheduler == "slurm":
        parts = ", ".join(
            f"{p.name}{'*' if p.default else ''} (max {p.max_time}"
            f"{', accounts ' + ' '.join(p.allow_accounts) if p.allow_accounts else ''})"
            for p in found.partitions
        )
        lines.append(f"  scheduler: Slurm; partitions: {parts or 'none'}")
        if found.accounts:
            yours = ", ".join(
                f"{a} (default)" if a == found.default_account else a for a in found.accounts
            )
            lines.append(f"  your Slurm accounts: {yours}")
    else:
        lines.append("  scheduler: none (no sinfo/squeue): a standalone server")
    for p in found.pythons:
        where = f"module {p.module}" if p.module else "login shell's python3"
        ok = "" if p.version_tuple() >= min_python() else " (too old)"
        lines.append(f"  {where}: {p.describe()}{ok}")
    if not found.pythons:
        lines.append("  no Python found")
    state = {True: "reachable", False: "NOT reachable", None: "unknown"}[found.index_reachable]
    lines.append(f"  package index {index_base(found.index_url)}: {state} from the login node")
    out.emit(
        Update(
            "info",
            message="\n".join(lines),
            data={
                "found": {
                    "host": found.host,
                    "scheduler": found.scheduler,
                    "partitions": [p.__dict__ for p in found.partitions],
                    "accounts": found.accounts,
                    "default_account": found.default_account,
                    "pythons": [p.__dict__ for p in found.pythons],
                    "index": {"url": found.index_url, "reachable": found.index_reachable},
                }
            },
        )
    )
