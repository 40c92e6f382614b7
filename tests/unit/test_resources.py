"""Resource validation: what sbatch would refuse is refused here with a one-line fix."""

import pytest

from driver.errors import ExitCode, NodebookError
from driver.resources import Resources, time_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 1800),
        ("01:30:00", 5400),
        ("90:00", 5400),
        ("2-00:00:00", 172800),
        ("1-12", 129600),
        ("0:30", 30),
        ("120", 7200),
    ],
)
def test_time_formats(value, seconds):
    assert time_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "1h", "01:60:00", "-1", "1:2:3:4", "0", "00:00:00", "ab"])
def test_bad_times(value):
    with pytest.raises(NodebookError) as err:
        time_seconds(value)
    assert err.value.code == ExitCode.USAGE
    assert "--time" in err.value.message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpus": 0},
        {"cpus": 10000},
        {"mem": "8GB"},
        {"mem": "0"},
        {"mem": "-1G"},
        {"gpus": "0"},
        {"gpus": "a100:"},
        {"partition": "bad name"},
        {"account": "x;rm"},
        {"qos": "a" * 65},
    ],
)
def test_bad_resources(kwargs):
    with pytest.raises(NodebookError) as err:
        Resources(**kwargs).validate()
    assert err.value.code == ExitCode.USAGE
    assert len(err.value.message.splitlines()) == 1


def test_extravars_only_given_values():
    r = Resources(partition="long", cpus=4, mem="16G", gpus="a100:2", time="02:00:00").validate()
    assert r.extravars() == {
        "nodebook_partition": "long",
        "nodebook_cpus": "4",
        "nodebook_mem": "16G",
        "nodebook_gpus": "a100:2",
        "nodebook_time": "02:00:00",
    }
    assert Resources().extravars() == {}
