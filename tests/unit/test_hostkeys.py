"""Pinning compute nodes' host keys from the login node's records, and the tunnel's failures in
ssh's own words (driver.hostkeys, driver.tunnel.failure): pure logic and one local file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from driver import hostkeys
from driver.inventory import Cluster
from driver.remote import Remote, Reply
from driver.ssh import Master
from driver.tunnel import Endpoint, Tunnel, failure

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIFdZGyM9XOEkwYeIHAUuafn9QTpF2MSDY1VurjznDQFl"
CA = "AAAAC3NzaC1lZDI1NTE5AAAAIE1TzIfDU1pCqC+qb7QC/9Ll5XRqfaTk6ZGPhPCyoVp/"
HASHED = "|1|9520qSab0HaR2JH+XmjSp202fDQ=|uiFavc/1l+WaqwVvpehvz/B1xLw="


def test_records_are_rewritten_under_the_nodes_name() -> None:
    records = [
        f"cn01,cn01.sandbox.cluster,10.251.0.11 ssh-ed25519 {KEY}",
        f"{HASHED} ssh-ed25519 {KEY}",  # the same key, from a hashed user file: once
        f"@cert-authority *.sandbox.cluster ssh-ed25519 {CA}",
        f"@revoked cn01 ssh-rsa {CA}",
    ]
    assert hostkeys.rewrite("cn01", records) == [
        f"cn01 ssh-ed25519 {KEY}",
        f"@cert-authority cn01 ssh-ed25519 {CA}",
        f"@revoked cn01 ssh-rsa {CA}",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "cn01 ssh-ed25519",  # no key
        "cn01 ssh-ed25519 not base64!",
        "cn01 SSH ED25519 AAAA",
        f"cn01 ssh-ed25519 {KEY}\ncn02 ssh-ed25519 {KEY}".replace("\n", "\\n"),
        f"@bogus cn01 ssh-ed25519 {KEY}",
    ],
)
def test_malformed_records_are_dropped(line: str) -> None:
    assert hostkeys.rewrite("cn01", [line]) == []


def test_a_node_name_that_is_not_a_host_name_pins_nothing() -> None:
    assert hostkeys.rewrite("cn01 *", [f"cn01 ssh-ed25519 {KEY}"]) == []
    assert hostkeys.rewrite("cn[01-02]", [f"cn01 ssh-ed25519 {KEY}"]) == []


def test_pin_replaces_the_nodes_lines_keeps_others_and_is_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path))
    assert hostkeys.pin("hpc", "cn01", [f"x ssh-ed25519 {CA}"]) == 1
    assert hostkeys.pin("hpc", "cn02", [f"x ssh-ed25519 {KEY}"]) == 1
    # the login node's word changed for cn01 (a reinstalled node): the new key replaces the old
    assert hostkeys.pin("hpc", "cn01", [f"x ssh-ed25519 {KEY}"]) == 1
    path = hostkeys.pinned_file("hpc")
    assert path == tmp_path / "hpc" / "known_hosts"
    assert path.read_text().splitlines() == [f"cn02 ssh-ed25519 {KEY}", f"cn01 ssh-ed25519 {KEY}"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert hostkeys.pin("hpc", "cn03", []) == 0  # no records: nothing written
    assert "cn03" not in path.read_text()


def test_concurrent_sessions_pin_without_losing_a_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path))
    nodes = [f"cn{i:02d}" for i in range(24)]
    threads = [
        threading.Thread(target=hostkeys.pin, args=("hpc", n, [f"x ssh-ed25519 {KEY}"]))
        for n in nodes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pinned = {line.split()[0] for line in hostkeys.pinned_file("hpc").read_text().splitlines()}
    assert pinned == set(nodes)


def test_node_options_list_the_users_files_then_the_pinned_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path))
    config = tmp_path / "ssh config"
    config.write_text(f"Host *\n  UserKnownHostsFile {tmp_path}/mine ~/.ssh/other\n")
    cluster = Cluster("hpc", tmp_path / "hosts.yml", "login", ssh_args=("-F", str(config)))
    opts = hostkeys.node_options(cluster, "cn01")
    values = dict(o.split("=", 1) for o in opts if o != "-o")
    assert values["HostKeyAlias"] == "cn01"
    assert values["StrictHostKeyChecking"] == "yes"
    files = values["UserKnownHostsFile"]
    home = os.path.expanduser("~")
    # (ssh -G prints the list space-separated: a path with a space cannot be told apart)
    assert files == f"{tmp_path}/mine {home}/.ssh/other {tmp_path}/hpc/known_hosts"


# What OpenSSH printed here for each cause (the sandbox, `ssh -W` through the login master).
CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:3tC0dYkQ3pJgR9Ybq6b5qUuGQH3zpX0u2b9x3m2Wm5E.
Please contact your system administrator.
Add correct host key in /tmp/state/sandbox/known_hosts to get rid of this message.
Offending ED25519 key in /tmp/state/sandbox/known_hosts:1
Host key for cn01 has changed and you have requested strict checking.
Host key verification failed.
"""
SAMPLES = {
    "host-key-changed": CHANGED,
    "host-key-unknown": "No ED25519 host key is known for cn01 and you have requested strict "
    "checking.\nHost key verification failed.\n",
    "no-job-on-node": "Access denied by pam_slurm_adopt: you have no active jobs on this node\n"
    "Connection closed by UNKNOWN port 65535\n",
    "permission-denied": "alice@cn01: Permission denied (publickey).\n",
    "prohibited": "channel 0: open failed: administratively prohibited: open failed\n"
    "stdio forwarding failed\nkex_exchange_identification: Connection closed by remote host\n",
    "refused": "channel 0: open failed: connect failed: Connection refused\n"
    "stdio forwarding failed\nkex_exchange_identification: Connection closed by remote host\n"
    "Connection closed by UNKNOWN port 65535\n",
    "no-route": "channel 0: open failed: connect failed: No route to host\n"
    "stdio forwarding failed\n",
    "unresolvable": "channel 0: open failed: connect failed: Temporary failure in name "
    "resolution\nstdio forwarding failed\n"
    "kex_exchange_identification: Connection closed by remote host\n",
}
FIXES = {
    "host-key-changed": "tell your cluster's admins",
    "host-key-unknown": "/etc/ssh/ssh_known_hosts",
    "no-job-on-node": "nodebook list",
    "permission-denied": "--tunnel hops",
    "prohibited": "MaxSessions",
    "refused": "--tunnel via-login",
    "no-route": "--tunnel via-login",
    "unresolvable": "--tunnel via-login",
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_tunnel_failure_names_what_ssh_said_and_a_fix(kind: str) -> None:
    exc = failure("cn01", SAMPLES[kind], 255)
    assert exc.kind == kind
    assert exc.code == 7
    assert FIXES[kind] in exc.message
    assert "cn01" in exc.message
    said = [ln for ln in SAMPLES[kind].splitlines() if ln and not ln.startswith("@")]
    assert any(ln.rstrip(".") in exc.message for ln in said), exc.message
    assert "\n" not in exc.message


def test_a_changed_key_keeps_ssh_s_warning_and_the_fingerprint() -> None:
    exc = failure("cn01", CHANGED, 255)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in exc.message
    assert "man-in-the-middle" in exc.message
    assert "SHA256:" in exc.message or "fingerprint" in exc.message
    assert exc.final


def test_an_unknown_failure_quotes_ssh_not_a_guess() -> None:
    exc = failure("cn01", "some new OpenSSH message\n", 255)
    assert exc.kind == "other" and "some new OpenSSH message" in exc.message
    assert not exc.final
    assert "exited with status 255" in failure("cn01", "", 255).message


@pytest.mark.parametrize(
    ("probe", "kind", "said"),
    [
        ({"open": False, "error": "connect to cn02 port 22: Connection refused"}, "refused", ""),
        (
            {"open": False, "error": "connect to cn02 port 22: Name or service not known"},
            "unresolvable",
            "",
        ),
        ({"open": True}, "forward-refused", "AllowTcpForwarding"),
    ],
)
def test_through_the_master_the_login_node_is_asked_what_it_meets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, probe: dict, kind: str, said: str
) -> None:
    """A -W through the master learns only "Session open refused by peer" (the master logs
    nothing more): one helper `probe` says what the login node meets at the node's sshd."""
    cluster = Cluster("hpc", tmp_path / "hosts.yml", "login")
    master = Master(cluster, tmp_path)
    calls: list[tuple[str, ...]] = []

    def call(self: Remote, *args: str, **kw: object) -> Reply:
        calls.append(args)
        return Reply(0, [{"nodebook": "probe", "node": "cn02", **probe}], "")

    monkeypatch.setattr(Remote, "call", call)
    tunnel = Tunnel(Remote(master, cluster), "jump", Endpoint("cn02", socket="/s"), 1, "7")
    tunnel.stderr = tmp_path / "tunnel.err"
    tunnel.stderr.write_text(
        "Stdio forwarding request failed: Session open refused by peer\n"
        "kex_exchange_identification: Connection closed by remote host\n"
    )
    exc = tunnel.failure()
    assert calls == [("probe", "cn02")]
    assert exc.kind == kind, exc.message
    assert said in exc.message and "cn02" in exc.message


def test_a_session_channel_the_master_was_refused_is_maxsessions() -> None:
    text = "mux_client_request_session: session request failed: Session open refused by peer\n"
    exc = failure("cn01", text, 255)
    assert exc.kind == "prohibited" and "MaxSessions" in exc.message
