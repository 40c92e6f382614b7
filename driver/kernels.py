"""``nodebook kernels``: the kernels the session's Jupyter offers, the researcher's own first.

The cluster side is the remote helper's ``kernels`` command (one round trip over a master): the
kernelspecs Jupyter finds with the job's JUPYTER_PATH (nodebook's data dir first, where the
nodebook_kernels role registers the environments of ``nodebook_kernels_environments``), the
user's own (~/.local/share/jupyter) and nodebook's own ``python3``; which one is the default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from driver.errors import ExitCode
from driver.progress import Renderer, Update

if TYPE_CHECKING:
    from driver.inventory import Cluster

EXAMPLES = """\
examples:
  nodebook kernels                               the kernels of your default cluster
  nodebook kernels --cluster hpc2 --json         one JSON object per kernel

Your own conda envs and venvs become kernels through setup: list them in the inventory as
nodebook_kernels_environments (README, "Your own environments as kernels") and run setup.
"""
# Where a kernelspec lives, in words.
SOURCES = {
    "nodebook": "nodebook's kernels",
    "user": "~/.local/share/jupyter",
    "jupyter": "nodebook's Jupyter",
    "system": "the system's Jupyter",
}


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``kernels`` subcommand (registered by driver.cli)."""
    p = sub.add_parser(
        "kernels",
        help="the kernels your notebooks can use (your own environments, set up by setup)",
        description="The kernels the session's Jupyter offers on the cluster, and the default.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p)


def describe(kernel: dict[str, Any]) -> str:
    """One human line for one kernel: name, display name, environment, modules, where."""
    mark = "*" if kernel.get("default") else " "
    what = str(kernel.get("display_name") or "")
    if kernel.get("managed"):
        env = f"{kernel.get('kind')} {kernel.get('prefix')}"
        modules = " ".join(str(m) for m in kernel.get("modules") or [])
        where = env + (f", modules {modules}" if modules else "")
    else:
        where = f"{SOURCES.get(str(kernel.get('source')), kernel.get('source'))}: "
        where += str(kernel.get("python") or kernel.get("resource_dir") or "")
    return f"{mark} {kernel.get('name')!s:<16} {what:<28} {where}"


def list_kernels(cluster: Cluster, out: Renderer) -> ExitCode:
    """One line per kernel (the default marked with *), then where nodebook's kernels live."""
    from driver.commands import connected

    with connected(cluster) as remote:
        reply = remote.call("kernels", timeout=60)
    kernels = reply.of("kernel")
    summary = reply.first("kernels") or {}
    for kernel in kernels:
        data = {k: v for k, v in kernel.items() if k != "nodebook"}
        if out.json_mode:
            out.emit(Update("kernel", data={**data, "cluster": cluster.name}))
        else:
            out.emit(Update("info", message=describe(kernel)))
    default = str(summary.get("default") or "python3")
    note = "" if summary.get("default_found", True) else f" ({default} is not registered)"
    out.emit(
        Update(
            "info",
            message=(
                f"{len(kernels)} kernels on {cluster.name}; default (*): {default}{note}. "
                "Your own environments: nodebook_kernels_environments, then `nodebook setup`"
            ),
            data={
                "cluster": cluster.name,
                "default": default,
                "data_dir": summary.get("data_dir"),
            },
        )
    )
    return ExitCode.OK
