"""A session's local record (driver.state keeps one JSON file of it per running session)."""

from dataclasses import asdict, dataclass
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
