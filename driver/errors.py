"""Errors and exit codes: every failure is a NodebookError caught once at the CLI edge."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of ``python -m driver`` (also listed in ``--help``)."""

    OK = 0  # session ended normally (Jupyter shut down from its UI, `nodebook stop`), command done
    ERROR = 1  # unexpected failure
    USAGE = 2  # bad command line or resource value
    NOT_SET_UP = 3  # setup has not been run on this cluster
    SSH = 4  # cannot reach the cluster over ssh
    SCHEDULER = 5  # the scheduler refused the job or it never started
    JOB_ENDED = 6  # the job ended on its own (scancel elsewhere, walltime, crash)
    TUNNEL_LOST = 7  # the tunnel could not be re-established within the bound
    DUPLICATE = 8  # a session is already running on this cluster (see --allow-second)
    NOT_FOUND = 9  # no such session (stop, attach)
    HANGUP = 129  # SIGHUP: terminal closed; everything was cleaned up
    INTERRUPTED = 130  # Ctrl-C (SIGINT); everything was cleaned up
    TERMINATED = 143  # SIGTERM; everything was cleaned up


EXIT_CODE_HELP = "\n".join(
    f"  {code.value:>3}  {code.name.lower().replace('_', ' ')}" for code in ExitCode
)


class NodebookError(Exception):
    """A failure with a one-line, actionable message and the exit code it maps to."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Stopped(BaseException):
    """Raised from a signal handler (SIGTERM, SIGHUP, a stop request) to unwind into cleanup,
    like Ctrl-C; it carries the signal that raised it."""

    def __init__(self, code: ExitCode, signame: str, signum: int) -> None:
        super().__init__(signame)
        self.code = code
        self.signame = signame
        self.signum = signum
