"""What the driver knows of a session's job (``Job``), and the session's local record
(``SessionRecord``: driver.state keeps one JSON file of it per running session)."""

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SessionRecord:
    cluster: str
    job_id: str
    node: str
    local_port: int
    tunnel: str
    driver_pid: int
    user: str | None = None
    started: float = 0.0
    control_path: str | None = None  # the session's ssh master, reused by `nodebook ssh-config`

    def fields(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Job:
    """The job a session submitted (or attached to), and what is known about it."""

    tag: str
    id: str | None = None
    submitted: bool = False  # a submission may have happened (cancel by tag while no id)
    gone: bool = False  # it ended on its own: nothing left to cancel
    cancel_sent: bool = False  # the session's one `cancel` call was made (whatever it said)
    heartbeat_timeout: int | None = None  # the dead-man's switch the job runs with
    socket: str | None = None  # where its unix socket will be (from the submission)
    endpoint: str | None = None  # how Jupyter listens (from the submission)
    last_heartbeat: float = field(default_factory=time.time)  # wall clock of the last touch

    def lease_end(self) -> float | None:
        """Wall-clock time at which the job ends itself without a heartbeat (None: never)."""
        if not self.heartbeat_timeout:
            return None
        return self.last_heartbeat + self.heartbeat_timeout
