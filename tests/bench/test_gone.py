"""Ctrl-C -> gone as the user sees it (bench.common.gone_after), with a fake squeue poll: the job
must be listed before the end, the end is timed from the moment it is started, and every poll
after it counts until the first answer without the job."""

from __future__ import annotations

import time

import pytest

from bench.common import gone_after


class FakeSqueue:
    """Lists the job for `listed_after_end` polls after the end, then no more."""

    def __init__(self, listed_before: bool = True, listed_after_end: int = 2) -> None:
        self.listed_before = listed_before
        self.left = listed_after_end
        self.log: list[str] = []
        self.ended = False

    def poll(self) -> bool:
        time.sleep(0.01)  # a round trip
        if not self.ended:
            self.log.append("poll before")
            return self.listed_before
        self.log.append("poll after")
        self.left -= 1
        return self.left >= 0

    def end(self) -> None:
        self.log.append("end")
        self.ended = True


def test_the_end_is_timed_to_the_first_answer_without_the_job() -> None:
    sq = FakeSqueue(listed_after_end=2)
    seen = gone_after(sq.poll, sq.end)
    assert sq.log == ["poll before", "end", "poll after", "poll after", "poll after"]
    assert seen["polls"] == 3  # two still listing it, the third without it
    assert 0.03 <= seen["gone"] < 1 and 0.01 <= seen["poll_s"] < 0.5
    assert seen["t0"] <= time.time() - seen["gone"] + 0.01


def test_a_job_not_listed_before_its_end_is_an_error_and_nothing_is_ended() -> None:
    sq = FakeSqueue(listed_before=False)
    with pytest.raises(RuntimeError, match="not in squeue before"):
        gone_after(sq.poll, sq.end)
    assert "end" not in sq.log


def test_a_job_that_stays_is_an_error() -> None:
    sq = FakeSqueue(listed_after_end=10**6)
    with pytest.raises(RuntimeError, match="still in squeue"):
        gone_after(sq.poll, sq.end, timeout=0.1)
