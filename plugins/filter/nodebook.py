"""nodebook's option table and rules, as Ansible filters (and for the driver).

OPTIONS is the one definition of each option: its variable, rule, command-line flag and help,
the role that holds its default, whether a session passes it, and its flag per scheduler. The
driver's command line (driver/options.py), the roles' checks and #SBATCH lines
(roles/nodebook_job/vars/main.yml), playbooks/session.yml's submission and the driver's own are
derived from it; the roles' argument_specs.yml and defaults are checked against it by
tests/unit/test_option_table.py. The one place where a value like ``--time 1-12:00`` or
``nodebook_job_mem: 8G`` is checked is RULES here. The defaults are not here: they are the roles'
``defaults/main.yml``, read by ``nodebook_default``.

Filters:
  {{ {'nodebook_job_time': '01:30:00', ...} | nodebook_invalid }}   -> ["name=value: reason", ...]
  {{ {'nodebook_job_time': '01:30:00', ...} | nodebook_sbatch_args }} -> ["--time=01:30:00"]
  {{ {'nodebook_job_name': 'nb', ...} | nodebook_job_directives }}  -> ["--nodes=1", ...,
                                                                         "--job-name=nb"]
  {{ 'session' | nodebook_option_variables }}    -> the variables a session passes
  {{ 'nodebook_job' | nodebook_option_variables('validate') }} -> the role's, checked in validate
  {{ {'nodebook_session_tag': 't1', ...} | nodebook_submit_args }}  -> the helper's submit args
                                                       (raises "[usage] ..." for a bad value)
  {{ '1-00:00:00' | nodebook_slurm_seconds }}                       -> 86400
  {{ 'nodebook_environment_base_dir' | nodebook_default }}          -> ".nodebook"
  {{ '.nodebook' | nodebook_helper }}     -> '"$HOME"/.nodebook/bin/nodebook-remote --protocol 2'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

# Slurm --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME_RE = re.compile(
    r"^(\d+)-(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?$|^(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$"
)
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PARTITION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}(,[A-Za-z0-9_.-]{1,64})*$")
MEM_RE = re.compile(r"^[1-9]\d*[KMGTkmgt]?$")
GPUS_RE = re.compile(r"^([A-Za-z0-9_.-]+:)?[1-9]\d*$")
GRES_RE = re.compile(r"^[A-Za-z0-9_.:,-]+$")
TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JOB_ID_RE = re.compile(r"^s?[0-9]{1,20}$")
SBATCH_OPTION_RE = re.compile(r"^--[a-z][a-z-]*(=[^\n]*)?$")
# Paths the remote helper reads from setup.json: absolute, no quotes, backslashes or control
# characters (the helper reads setup.json line by line, without unescaping).
PATH_RE = re.compile(r'^/[^"\\\x00-\x1f]*$')
ENDPOINTS = ("socket", "tcp", "tcp-node")
SCHEDULERS = ("slurm", "none")


def slurm_seconds(value: Any) -> int:
    """Seconds in a Slurm time string; ValueError (with the reason) for what sbatch refuses."""
    text = str(value)
    match = TIME_RE.match(text)
    if not match:
        raise ValueError("use HH:MM:SS, MM, D-HH or D-HH:MM:SS (for example 01:30:00)")
    g = match.groups()
    if g[0] is not None:  # D-H[:M[:S]]
        days, hours, minutes, seconds = (int(x or 0) for x in g[:4])
    elif g[6] is not None:  # H:M:S
        days, hours, minutes, seconds = 0, int(g[4]), int(g[5]), int(g[6])
    else:  # M or M:S (minutes may exceed 59)
        days, hours, minutes, seconds = 0, 0, int(g[4]), int(g[5] or 0)
    if seconds >= 60 or (minutes >= 60 and (g[0] is not None or g[6] is not None)):
        raise ValueError("minutes and seconds must be below 60")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError("must be longer than zero")
    return total


def _whole(low: int) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or int(text) < low:
            raise ValueError(f"a whole number, at least {low}")

    return check


def _match(pattern: re.Pattern[str], expect: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not pattern.match(str(value)):
            raise ValueError(expect)

    return check


def _choice(choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if str(value) not in choices:
            raise ValueError(f"one of {', '.join(choices)}")

    return check


def _time(value: Any) -> None:
    slurm_seconds(value)


def _sbatch_options(value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and SBATCH_OPTION_RE.match(v) for v in value
    ):
        raise ValueError('a list of options like "--constraint=skylake"')


# What each kind of value must look like. Empty strings mean "not given" (the default applies).
RULES: dict[str, Callable[[Any], None]] = {
    "time": _time,
    "cpus": _whole(1),
    "mem": _match(MEM_RE, "a size like 8G or 4000M (units K, M, G, T)"),
    "gpus": _match(GPUS_RE, "a count or TYPE:COUNT (for example 1 or a100:2)"),
    "gres": _match(GRES_RE, "a gres like gpu:1"),
    "partition": _match(PARTITION_RE, "a partition name (letters, digits, '.', '_', '-')"),
    "name": _match(NAME_RE, "letters, digits, '.', '_' and '-' only"),
    "seconds": _whole(0),
    "positive_seconds": _whole(1),
    "endpoint": _choice(ENDPOINTS),
    "scheduler": _choice(SCHEDULERS),
    "tag": _match(TAG_RE, "letters, digits, '_' and '-' (at most 64)"),
    "job_id": _match(JOB_ID_RE, "a job id: digits (Slurm), or s and digits (a standalone server)"),
    "path": _match(PATH_RE, "an absolute path without quotes, backslashes or control characters"),
    "sbatch_options": _sbatch_options,
}

# A type for Ansible's argument_specs and argparse, per rule (str unless named here), and the
# choices of the rules that are a choice.
RULE_TYPES: dict[str, str] = {
    "cpus": "int",
    "seconds": "int",
    "positive_seconds": "int",
    "sbatch_options": "list",
}
CHOICES: dict[str, tuple[str, ...]] = {"endpoint": ENDPOINTS, "scheduler": SCHEDULERS}


class Option(NamedTuple):
    """One row of the option table: everything nodebook knows about one setting but its default
    (the role's defaults/main.yml holds that)."""

    variable: str  # the inventory's, the extra vars', the role's name for it
    rule: str  # what a value must look like: a key of RULES
    help: str = ""  # the command line's help, or what the variable is for
    flag: str | None = None  # `nodebook session`'s option
    metavar: str = "VALUE"
    role: str | None = None  # the role whose defaults/main.yml and argument_specs.yml hold it
    late: bool = False  # its default comes from facts of setup's later roles: checked at configure
    session: bool = False  # a session passes it (command line over inventory) to the helper
    helper: str | None = None  # the helper's `submit` option that carries it
    # The scheduler's option for it: one column per scheduler (a second scheduler adds one).
    slurm: str | None = None


# The option table: one row per option. Adding an option is a row here and its default in the
# role's defaults/main.yml (tests/unit/test_option_table.py checks the argument specs, the
# defaults and session.yml against the rows, and follows a new row to every place that uses it).
OPTIONS: tuple[Option, ...] = (
    Option(
        "nodebook_job_name",
        "name",
        "Slurm job name (the session finds its jobs by it)",
        role="nodebook_job",
        slurm="--job-name",
    ),
    Option(
        "nodebook_job_partition",
        "partition",
        "Slurm partition (default: setup's nodebook_job_partition, else the cluster's "
        "default; `sinfo -s` on the login node lists them)",
        flag="--partition",
        metavar="NAME",
        role="nodebook_job",
        session=True,
        slurm="--partition",
    ),
    Option(
        "nodebook_job_account",
        "name",
        "account to charge (sbatch --account)",
        flag="--account",
        metavar="NAME",
        role="nodebook_job",
        session=True,
        slurm="--account",
    ),
    Option(
        "nodebook_job_qos",
        "name",
        "quality of service (sbatch --qos)",
        flag="--qos",
        metavar="NAME",
        role="nodebook_job",
        session=True,
        slurm="--qos",
    ),
    Option(
        "nodebook_job_time",
        "time",
        "walltime: HH:MM:SS, MM, D-HH or D-HH:MM:SS (default: setup's nodebook_job_time)",
        flag="--time",
        metavar="TIME",
        role="nodebook_job",
        session=True,
        slurm="--time",
    ),
    Option(
        "nodebook_job_cpus",
        "cpus",
        "CPUs for Jupyter and its kernels (sbatch --cpus-per-task)",
        flag="--cpus",
        metavar="N",
        role="nodebook_job",
        session=True,
        slurm="--cpus-per-task",
    ),
    Option(
        "nodebook_job_mem",
        "mem",
        "memory, for example 16G or 4000M",
        flag="--mem",
        metavar="SIZE",
        role="nodebook_job",
        session=True,
        slurm="--mem",
    ),
    Option(
        "nodebook_job_gpus",
        "gpus",
        "GPUs, a count or TYPE:COUNT (for example 1 or a100:2)",
        flag="--gpus",
        metavar="N|TYPE:N",
        role="nodebook_job",
        session=True,
        slurm="--gpus",
    ),
    Option(
        "nodebook_job_gres",
        "gres",
        "generic resources, for example gpu:1",
        role="nodebook_job",
        session=True,
        slurm="--gres",
    ),
    Option(
        "nodebook_job_extra_sbatch",
        "sbatch_options",
        "more sbatch options, one per item",
        role="nodebook_job",
    ),
    Option(
        "nodebook_job_endpoint",
        "endpoint",
        "how Jupyter listens on the node: socket (a 0600 unix socket), tcp (127.0.0.1) or "
        "tcp-node (the node's cluster address, for --tunnel via-login); default: setup's",
        flag="--endpoint",
        metavar="KIND",
        role="nodebook_job",
        session=True,
        helper="--endpoint",
    ),
    Option(
        "nodebook_job_lease",
        "seconds",
        "the session's lease: the job waits this long for a laptop that sleeps or lost its "
        "network, then ends itself (0: never; default: setup's nodebook_job_lease)",
        flag="--lease",
        metavar="S",
        role="nodebook_job",
        session=True,
        helper="--heartbeat",
    ),
    Option(
        "nodebook_job_pending_limit",
        "positive_seconds",
        "give up (and cancel) when the job is still pending after this long "
        "(default: setup's nodebook_job_pending_limit)",
        flag="--pending-limit",
        metavar="S",
        role="nodebook_job",
        session=True,
    ),
    Option("nodebook_job_poll_interval", "positive_seconds", role="nodebook_job"),
    Option("nodebook_job_start_timeout", "positive_seconds", role="nodebook_job"),
    Option("nodebook_job_runtime_base", "path", role="nodebook_job"),
    Option("nodebook_job_script", "path", role="nodebook_job", late=True),
    Option("nodebook_job_jobs_dir", "path", role="nodebook_job", late=True),
    Option("nodebook_job_config_dir", "path", role="nodebook_job", late=True),
    Option("nodebook_job_python", "path", role="nodebook_job", late=True),
    Option("nodebook_job_bin_dir", "path", role="nodebook_job", late=True),
    # A host's, not a role's; its default is HOST_DEFAULTS below.
    Option("nodebook_scheduler", "scheduler", "slurm, or none for a standalone server"),
    # The session's own, given by the driver (or by hand to session.yml and cleanup.yml).
    Option("nodebook_session_tag", "tag", "marks a session's job before its id is known"),
    Option("nodebook_job_id", "job_id", "the job cleanup.yml cancels"),
)
# Per scheduler: the options every job script carries, and the variable whose items are the
# scheduler's own options, added as they are.
FIXED: dict[str, tuple[str, ...]] = {"slurm": ("--nodes=1", "--ntasks=1")}
EXTRA: dict[str, str] = {"slurm": "nodebook_job_extra_sbatch"}

# Derived from the table. The rule of each variable:
VARIABLES: dict[str, str] = {o.variable: o.rule for o in OPTIONS}
# The job's resources a session passes to sbatch (only those it was given):
SBATCH_FLAGS: dict[str, str] = {o.variable: o.slurm for o in OPTIONS if o.session and o.slurm}

# Inventory variables that describe a host rather than a role's setting.
HOST_DEFAULTS: dict[str, Any] = {"nodebook_scheduler": "slurm"}


def option_variables(where: str, phase: str = "validate") -> list[str]:
    """The table's variables: where="session", those a session takes (playbooks/session.yml
    reads them); else a role's, those its `phase` checks (validate, or configure for the late
    ones, whose defaults come from facts of setup's later roles)."""
    if where == "session":
        return [o.variable for o in OPTIONS if o.session]
    return [o.variable for o in OPTIONS if o.role == where and o.late == (phase == "configure")]


def reason(rule: str, value: Any) -> str:
    """Why `value` breaks `rule` ("" when it is fine or not given)."""
    if value is None or value == "":
        return ""
    try:
        RULES[rule](value)
    except ValueError as exc:
        return str(exc)
    return ""


def invalid(values: Mapping[str, Any]) -> list[str]:
    """One "name=value: reason" per bad variable (names from VARIABLES)."""
    problems = []
    for name, value in values.items():
        why = reason(VARIABLES[name], value)
        if why:
            problems.append(f"{name}={value!r}: {why}")
    return problems


class UsageError(ValueError):
    """Bad options given to a playbook (the driver checks its own before it runs one)."""


def scheduler_args(values: Mapping[str, Any], scheduler: str = "slurm") -> list[str]:
    """The given options as the scheduler's options (its column of OPTIONS), in the table's
    order; UsageError for a bad value."""
    if scheduler not in FIXED:
        raise UsageError(f"[usage] nodebook has no options for the scheduler {scheduler!r}")
    problems = invalid(values)
    if problems:
        raise UsageError("[usage] bad session options: " + "; ".join(problems))
    return [
        f"{getattr(o, scheduler)}={values[o.variable]}"
        for o in OPTIONS
        if getattr(o, scheduler) and values.get(o.variable) not in (None, "")
    ]


def sbatch_args(values: Mapping[str, Any]) -> list[str]:
    """scheduler_args for Slurm."""
    return scheduler_args(values, "slurm")


def job_directives(values: Mapping[str, Any], scheduler: str = "slurm") -> list[str]:
    """A job script's scheduler options (the nodebook_job role's #SBATCH lines, and its sbatch
    --test-only): the fixed ones, each option given a value, then the extra ones as they are."""
    extra = values.get(EXTRA[scheduler]) or []
    return [*FIXED[scheduler], *scheduler_args(values, scheduler), *extra]


@cache
def role_defaults() -> dict[str, Any]:
    """Every role's defaults/main.yml, merged (the driver keeps them cached, as JSON)."""
    import yaml

    roles = Path(__file__).resolve().parents[2] / "roles"
    # libyaml's safe loader where PyYAML has it: the driver reads these before it submits
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    merged: dict[str, Any] = dict(HOST_DEFAULTS)
    for path in sorted(roles.glob("*/defaults/main.yml")):
        merged.update(yaml.load(path.read_text(), Loader=loader) or {})
    return merged


def default(name: str) -> Any:
    """A role's default for one of its variables (as written in defaults/main.yml)."""
    defaults = role_defaults()
    if name not in defaults:
        raise KeyError(f"no role defines a default for {name}")
    return defaults[name]


# What a session's submission takes besides the resources (SBATCH_FLAGS): the driver reads these
# from the inventory too.
SUBMIT_KEYS = (
    "nodebook_scheduler",
    "nodebook_session_tag",
    "nodebook_allow_second",
    *(o.variable for o in OPTIONS if o.session and o.variable not in SBATCH_FLAGS),
)


def submit_args(values: Mapping[str, Any]) -> list[str]:
    """The remote helper's `submit` arguments for a session: the same in playbooks/session.yml
    and in the driver, which submits over its ssh master before Ansible has started. Values not
    given are absent or ""; UsageError for a bad one."""
    given = {k: v for k, v in values.items() if k != "nodebook_allow_second"}
    scheduler = str(given.get("nodebook_scheduler") or default("nodebook_scheduler"))
    tag = str(given.get("nodebook_session_tag") or "manual")
    args = ["--scheduler", scheduler, "--tag", tag]
    if str(values.get("nodebook_allow_second", "")).lower() in ("true", "yes", "1"):
        args.append("--allow-second")
    for o in OPTIONS:
        if o.session and o.helper and given.get(o.variable) not in (None, ""):
            args += [o.helper, str(given[o.variable])]
    checked = {**given, "nodebook_scheduler": scheduler, "nodebook_session_tag": tag}
    return [*args, "--", *sbatch_args(checked)]


ROOT = Path(__file__).resolve().parents[2]  # the tree holding plugins/, roles/, playbooks/
HELPER = ROOT / "roles" / "nodebook_remote" / "files" / "bin" / "nodebook-remote"


@cache
def protocol() -> int:
    """The protocol the remote helper of this tree speaks (its NB_PROTOCOL line)."""
    match = re.search(r"^NB_PROTOCOL=(\d+)", HELPER.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{HELPER} does not declare NB_PROTOCOL")
    return int(match.group(1))


def helper_command(base_dir: str) -> str:
    """The shell words that run the installed helper (base dir relative to $HOME unless absolute)
    and tell it which protocol this side speaks."""
    rel = str(base_dir).rstrip("/") + "/bin/nodebook-remote"
    if any(c in rel for c in "\"'\\\n"):
        raise UsageError(
            f"[usage] nodebook_environment_base_dir {base_dir!r}: no quotes or backslashes"
        )
    word = f"'{rel}'" if rel.startswith("/") else f"\"$HOME\"/'{rel}'"
    return f"{word} --protocol {protocol()}"


class FilterModule:
    """The filters listed at the top of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nodebook_invalid": invalid,
            "nodebook_sbatch_args": sbatch_args,
            "nodebook_slurm_seconds": slurm_seconds,
            "nodebook_default": default,
            "nodebook_helper": helper_command,
            "nodebook_submit_args": submit_args,
            "nodebook_job_directives": job_directives,
            "nodebook_option_variables": option_variables,
        }
