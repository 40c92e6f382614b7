"""Job resources from the command line: validated here and again in playbooks/session.yml."""

import re
from dataclasses import dataclass

from driver.errors import ExitCode, NodebookError

# Slurm --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
TIME_RE = re.compile(r"^(\d+-\d{1,2}(:\d{1,2}(:\d{1,2})?)?|\d+(:\d{1,2}(:\d{1,2})?)?)$")
MEM_RE = re.compile(r"^[1-9]\d*[KMGT]?$")
GPUS_RE = re.compile(r"^([A-Za-z0-9_-]+:)?[1-9]\d*$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def time_seconds(value: str) -> int:
    """Seconds in a Slurm time string; raises NodebookError for anything sbatch would refuse."""
    if not TIME_RE.match(value):
        raise NodebookError(
            f"--time {value!r}: use HH:MM:SS, MM, D-HH or D-HH:MM:SS (for example 01:30:00)",
            ExitCode.USAGE,
        )
    days = 0
    rest = value
    if "-" in value:
        day_part, rest = value.split("-", 1)
        days = int(day_part)
        parts = [int(p) for p in rest.split(":")]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    else:
        parts = [int(p) for p in rest.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    minutes_lead = not days and rest.count(":") < 2  # "M" or "M:S": minutes may exceed 59
    if (minutes >= 60 and not minutes_lead) or seconds >= 60:
        raise NodebookError(
            f"--time {value!r}: minutes and seconds must be below 60", ExitCode.USAGE
        )
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise NodebookError(f"--time {value!r}: must be longer than zero", ExitCode.USAGE)
    return total


@dataclass(frozen=True)
class Resources:
    """What the job asks the scheduler for; None means the job template's default."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    gpus: str | None = None

    def validate(self) -> "Resources":
        """Raise NodebookError with a one-line fix for the first bad value; return self."""
        for flag, value in (
            ("--partition", self.partition),
            ("--account", self.account),
            ("--qos", self.qos),
        ):
            if value is not None and not NAME_RE.match(value):
                raise NodebookError(
                    f"{flag} {value!r}: letters, digits, '.', '_' and '-' only", ExitCode.USAGE
                )
        if self.time is not None:
            time_seconds(self.time)
        if self.cpus is not None and not 1 <= self.cpus <= 4096:
            raise NodebookError(
                f"--cpus {self.cpus}: a whole number from 1 to 4096", ExitCode.USAGE
            )
        if self.mem is not None and not MEM_RE.match(self.mem):
            raise NodebookError(
                f"--mem {self.mem!r}: a number with an optional unit K, M, G or T (for example 8G)",
                ExitCode.USAGE,
            )
        if self.gpus is not None and not GPUS_RE.match(self.gpus):
            raise NodebookError(
                f"--gpus {self.gpus!r}: a count or TYPE:COUNT (for example 1 or a100:2)",
                ExitCode.USAGE,
            )
        return self

    def extravars(self) -> dict[str, str]:
        """The non-default values as playbook extravars (``nodebook_<name>``)."""
        values = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "time": self.time,
            "cpus": None if self.cpus is None else str(self.cpus),
            "mem": self.mem,
            "gpus": self.gpus,
        }
        return {f"nodebook_{k}": v for k, v in values.items() if v is not None}
