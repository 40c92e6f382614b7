"""Rules of roles/nodebook_kernels: researchers' own environments as Jupyter kernels.

  {{ nodebook_kernels_environments | nodebook_kernel_problems(default) }} -> ["cause; fix", ...]
  {{ nodebook_kernels_environments | nodebook_kernel_entries }}
        -> [{name, display_name, modules, prefix, python}]   (normalized; after the check)
  {{ entries | nodebook_kernel_stat_paths }}     -> the paths to stat, 3 per entry
  {{ entries | nodebook_kernel_resolve(stats) }} -> entries with kind conda|venv|plain, python_ok
  {{ entry | nodebook_kernelspec(helper) }}       -> kernel.json's content
  {{ entry | nodebook_kernel_install_hint(pip_options) }} -> the command that adds ipykernel
  {{ entries | nodebook_kernel_probes(modules) }} -> entries with the helper's probe args
  {{ probe.results | nodebook_kernel_reports }}  -> {name: {ok, message, env, version}}
  {{ check.results | nodebook_kernel_ipykernel }} -> {missing: [entries], broken: ["cause; fix"]}
  {{ missing | nodebook_kernel_missing_message(pip_options) }}  -> setup's failure message

An entry is {name, display_name, modules: [...], prefix: PATH} or {..., python: PATH} (both:
the prefix is the environment, python its interpreter). The kind comes from the prefix on the
cluster: conda-meta/ makes it conda, pyvenv.cfg a venv, neither a plain Python install.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Jupyter's kernelspec names (jupyter_client's NAME_PAT), lowercase: the kernels/<name> dir.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Paths end up in kernel.json's argv and in the helper's arguments: absolute, printable, no
# quotes or backslashes.
PATH_RE = re.compile(r'^/[^"\'\\\x00-\x1f\x7f]*$')
MODULE_RE = re.compile(r"^[^\s\"'\\]+$")
KEYS = ("name", "display_name", "modules", "prefix", "python")
# nodebook's own kernel (the Jupyter venv's ipykernel): never shadowed by an entry.
OWN_KERNEL = "python3"
# kernel.json's marker: what the role registered (and so may remove).
MANAGED_BY = "nodebook_kernels"
# pip options that are setup's own business, not part of a command a person types.
QUIET_OPTIONS = ("--disable-pip-version-check", "--no-input", "--user")
VALUED_QUIET_OPTIONS = ("--timeout", "--retries")
SHAPE = "{name, display_name, modules: [...], prefix: PATH} or {..., python: PATH}"


def _label(index: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"environment {index + 1}" + (f" ({name!r})" if isinstance(name, str) else "")


def _entry_problems(index: int, item: Any) -> list[str]:
    label = _label(index, item)
    if not isinstance(item, Mapping):
        return [f"{label} is not a mapping: give {SHAPE}"]
    problems = []
    unknown = sorted(str(k) for k in item if k not in KEYS)
    if unknown:
        problems.append(f"{label}: unknown key {', '.join(unknown)} (allowed: {', '.join(KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(
            f"{label}: name must be 1-64 lowercase letters, digits, '.', '_' or '-' "
            "(it is the kernel's directory name), for example torch-gpu"
        )
    elif name == OWN_KERNEL:
        problems.append(f"{label}: {OWN_KERNEL!r} is nodebook's own kernel; pick another name")
    display = item.get("display_name", name)
    if not isinstance(display, str) or not display.strip() or "\n" in display:
        problems.append(f"{label}: display_name must be one line of text")
    modules = item.get("modules", [])
    if not isinstance(modules, list) or not all(
        isinstance(m, str) and MODULE_RE.match(m) for m in modules
    ):
        problems.append(f"{label}: modules must be a list of module names, e.g. [cuda/12.4]")
    paths = {k: item.get(k) for k in ("prefix", "python") if item.get(k) not in (None, "")}
    if not paths:
        problems.append(f"{label}: give the environment's prefix (or its python): {SHAPE}")
    for key, value in paths.items():
        if not isinstance(value, str) or not PATH_RE.match(value):
            problems.append(
                f"{label}: {key} must be an absolute path on the cluster without quotes or "
                f"backslashes (e.g. /home/you/conda/envs/x), not {value!r}"
            )
    return problems


def problems(environments: Any, default: Any = "") -> list[str]:
    """Every problem of the entries and the default kernel, one 'cause; fix' string each."""
    if environments in (None, ""):
        environments = []
    if not isinstance(environments, list):
        return [f"nodebook_kernels_environments must be a list of {SHAPE}"]
    found: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(environments):
        found += _entry_problems(index, item)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                found.append(
                    f"environments {seen[name] + 1} and {index + 1} are both named {name!r}: "
                    "names must differ"
                )
            seen.setdefault(name, index)
    if default not in (None, "", OWN_KERNEL) and default not in seen:
        choices = ", ".join([OWN_KERNEL, *seen])
        found.append(
            f"nodebook_kernels_default {default!r} is not one of the environments' names "
            f"({choices}); name one of them, or leave it empty for nodebook's own"
        )
    return found


def entries(environments: Any) -> list[dict[str, Any]]:
    """The entries with every key filled in (call after `problems` found none)."""
    out = []
    for item in environments or []:
        python = str(item.get("python") or "").rstrip("/")
        prefix = str(item.get("prefix") or "").rstrip("/")
        if not prefix:  # <prefix>/bin/python
            prefix = posixpath.dirname(posixpath.dirname(python)) or "/"
        out.append(
            {
                "name": item["name"],
                "display_name": str(item.get("display_name") or item["name"]),
                "modules": [str(m) for m in item.get("modules") or []],
                "prefix": prefix,
                "python": python or f"{prefix}/bin/python",
            }
        )
    return out


def stat_paths(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """What tells an environment's kind and whether its Python is there: 3 paths per entry."""
    return [
        p
        for e in items
        for p in (f"{e['prefix']}/conda-meta", f"{e['prefix']}/pyvenv.cfg", e["python"])
    ]


def resolve(items: Sequence[Mapping[str, Any]], stats: Sequence[Any]) -> list[dict[str, Any]]:
    """Entries with their kind (conda, venv, plain) and python_ok, from stat's loop results."""
    found = [(r.get("stat") or {}) if isinstance(r, Mapping) else {} for r in stats]
    if len(found) != 3 * len(items):
        raise ValueError("nodebook_kernel_resolve: give it the stats of nodebook_kernel_stat_paths")
    out = []
    for i, e in enumerate(items):
        meta, cfg, python = found[3 * i : 3 * i + 3]
        kind = "conda" if meta.get("isdir") else "venv" if cfg.get("exists") else "plain"
        ok = bool(python.get("exists")) and not python.get("isdir") and bool(python.get("xusr"))
        out.append({**e, "kind": kind, "python_ok": ok})
    return out


def kernelspec(entry: Mapping[str, Any], helper: str) -> dict[str, Any]:
    """kernel.json: the remote helper launches the kernel (modules, activation, ipykernel)."""
    argv = [helper, "kernel", "--name", entry["name"], "--kind", entry["kind"]]
    argv += ["--prefix", entry["prefix"], "--python", entry["python"]]
    for module in entry["modules"]:
        argv += ["--module", module]
    argv += ["--", "-f", "{connection_file}"]
    return {
        "argv": argv,
        "display_name": entry["display_name"],
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {
            "debugger": True,
            "nodebook": {
                "managed_by": MANAGED_BY,
                "kind": entry["kind"],
                "prefix": entry["prefix"],
                "python": entry["python"],
                "modules": list(entry["modules"]),
            },
        },
    }


def pip_words(options: Sequence[Any]) -> list[str]:
    """setup's pip options without those only setup needs (where the packages come from stays)."""
    words, skip = [], False
    for option in (str(o) for o in options):
        if skip:
            skip = False
        elif option in VALUED_QUIET_OPTIONS:
            skip = True
        elif option not in QUIET_OPTIONS and not option.startswith(
            tuple(f"{o}=" for o in VALUED_QUIET_OPTIONS)
        ):
            words.append(option)
    return words


def install_hint(entry: Mapping[str, Any], pip_options: Sequence[Any] = ()) -> str:
    """The command a person runs to add ipykernel to the environment."""
    words = [entry["python"], "-m", "pip", "install", *pip_words(pip_options), "ipykernel"]
    pip = shlex.join(words)
    if entry.get("kind") == "conda":
        return f"conda install -p {shlex.quote(entry['prefix'])} ipykernel (or with pip: {pip})"
    return pip


def _helper_line(lines: Sequence[Any]) -> dict[str, Any] | None:
    for line in lines or []:
        if isinstance(line, str) and line.startswith('{"nodebook":'):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                return parsed
    return None


def probes(items: Sequence[Mapping[str, Any]], modules: Sequence[Any]) -> list[dict[str, Any]]:
    """The remote helper's `environment` probe of each entry (nodebook_remote's probe entry
    point): nodebook's modules, then the entry's, loaded in a login shell; the entry comes back
    as the result's item."""
    return [
        {
            **item,
            "args": [
                "environment",
                "--python-command",
                str(item["python"]),
                "--",
                *map(str, modules),
                *map(str, item.get("modules") or []),
            ],
        }
        for item in items
    ]


def reports(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The helper's `environment` probe per entry (its modules loaded in a login shell): ok, a
    'cause; fix' message, and the PATH/LD_LIBRARY_PATH the modules set (for the checks)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results or []:
        item = r.get("item") or {}
        name = str(item.get("name"))
        if r.get("skipped"):
            continue
        line = _helper_line(r.get("stdout_lines") or [])
        if line is None:
            said = (str(r.get("stderr") or "").strip().splitlines() or ["nothing"])[-1]
            out[name] = {
                "ok": False,
                "message": f"environment {name!r}: loading its modules printed no report "
                f"(the login shell said: {said}); check that `bash -l` and `module load "
                f"{' '.join(item.get('modules') or [])}` work on the login node",
            }
        elif line.get("nodebook") != "environment":
            message = str(line.get("message") or line.get("error") or "failed")
            close = line.get("close") or []
            fix = "fix its modules in nodebook_kernels_environments"
            if line.get("error") == "missing-module":
                fix = f"close matches from `module avail`: {', '.join(close) or '(none)'}; {fix}"
            out[name] = {"ok": False, "message": f"environment {name!r}: {message}; {fix}"}
        else:
            env = {"PATH": str(line.get("path") or "")}
            if line.get("ld_library_path"):
                env["LD_LIBRARY_PATH"] = str(line["ld_library_path"])
            out[name] = {"ok": True, "env": env, "version": str(line.get("version") or "")}
    return out


def ipykernel(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`<python> -c 'import ipykernel'` per entry: which lack it, which Pythons do not work."""
    missing: list[dict[str, Any]] = []
    broken: list[str] = []
    for r in results or []:
        if r.get("skipped") or r.get("rc") in (0, None):
            continue
        item = dict(r.get("item") or {})
        stderr = str(r.get("stderr") or r.get("msg") or "")
        if re.search(r"No module named '?ipykernel'?\s*$", stderr.strip()):
            missing.append(item)
        else:
            said = (stderr.strip().splitlines() or ["no output"])[-1]
            broken.append(
                f"environment {item.get('name')!r}: {item.get('python')} -c 'import ipykernel' "
                f"fails on the login node: {said}; repair the environment (or its modules) "
                "until that command works"
            )
    return {"missing": missing, "broken": broken}


def missing_message(missing: Sequence[Mapping[str, Any]], pip_options: Sequence[Any] = ()) -> str:
    """Why setup stops for environments without ipykernel, and the command that adds it."""
    each = [
        f"environment {e['name']!r} ({e['python']}) has no ipykernel; add it with: "
        f"{install_hint(e, pip_options)}"
        for e in missing
    ]
    return (
        "; ".join(each) + "; or set nodebook_kernels_install_ipykernel: true and setup "
        "installs it (with Jupyter's pip settings)"
    )


class FilterModule:
    """nodebook_kernels' filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "nodebook_kernel_problems": problems,
            "nodebook_kernel_entries": entries,
            "nodebook_kernel_stat_paths": stat_paths,
            "nodebook_kernel_resolve": resolve,
            "nodebook_kernelspec": kernelspec,
            "nodebook_kernel_install_hint": install_hint,
            "nodebook_kernel_pip_words": pip_words,
            "nodebook_kernel_probes": probes,
            "nodebook_kernel_reports": reports,
            "nodebook_kernel_ipykernel": ipykernel,
            "nodebook_kernel_missing_message": missing_message,
        }
