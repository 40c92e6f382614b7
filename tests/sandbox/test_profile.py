"""The sandbox's profile: its cluster hosts' module system is the one it was brought up with.

`sandbox/cluster.py up --profile lmod|modules` (default lmod): Lmod, or Environment Modules (Tcl,
Debian's package extracted into the cache and laid over the hosts' /etc and /usr). These tests
pass on either; `make test-profile PROFILE=modules` runs them with the rest of the
profile_session suite (tests/conftest.py).
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.sandbox

SAYS = {"lmod": "Modules based on Lua", "modules": "Modules Release 5"}
HOME = {"lmod": "/usr/share/lmod/lmod", "modules": "/usr/share/modules"}


def test_status_names_the_profile(sandbox):
    status = sandbox.cluster("status").stdout
    assert re.search(rf"^  profile +{sandbox.profile} ", status, re.MULTILINE), status


@pytest.mark.parametrize("host", ["login", "cn01", "cn02"])
def test_login_shells_have_the_profiles_module_system(sandbox, host):
    # On the host itself (compute nodes admit ssh only into a job: pam_slurm_adopt).
    cmd = "module --version 2>&1; echo MODULESHOME=$MODULESHOME; ls /etc/profile.d"
    out = sandbox.host(host, ["bash", "-lc", cmd], user="bob").stdout
    assert SAYS[sandbox.profile] in out, out
    assert f"MODULESHOME={HOME[sandbox.profile]}" in out.splitlines(), out
    scripts = set(out.split())
    assert ("lmod.sh" in scripts) == (sandbox.profile == "lmod"), out
    assert ("modules.sh" in scripts) == (sandbox.profile == "modules"), out


def test_up_in_another_profile_says_down_first(sandbox):
    other = "modules" if sandbox.profile == "lmod" else "lmod"
    res = sandbox.cluster("up", "--profile", other, check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == (
        f"sandbox: the sandbox is up in profile {sandbox.profile}, not {other}: run "
        f"`python3 sandbox/cluster.py down` first, then `up --profile {other}`"
    )
