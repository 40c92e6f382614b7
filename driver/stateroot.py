"""Where this machine's nodebook state lives, with nothing imported but ``os``.

``nodebook stop JOBID --cluster NAME`` finds the session's driver here before it loads anything
else (driver.stop.ask): the session's stop link sits beside its record. driver.state builds its
paths on the same two functions.
"""

from __future__ import annotations

import os

STOP_LINK_SUFFIX = ".stop"  # <root>/<cluster>/<job>.stop -> the driver's stop socket


def state_root_dir() -> str:
    """``$NODEBOOK_STATE_DIR``, else ``$XDG_STATE_HOME/nodebook``, else ~/.local/state/nodebook."""
    if os.environ.get("NODEBOOK_STATE_DIR"):
        return os.environ["NODEBOOK_STATE_DIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "nodebook")


def stop_link(cluster: str, job_id: str, root: str | None = None) -> str:
    """The link to the stop socket of the driver that holds ``job_id`` on ``cluster``."""
    return os.path.join(root or state_root_dir(), cluster, job_id + STOP_LINK_SUFFIX)
