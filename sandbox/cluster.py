#!/usr/bin/env python3
"""The nodebook sandbox: a real, tiny Slurm cluster on one Linux machine.

Four hosts, each a set of namespaces held open by an "anchor" process:

    laptop (10.251.1.2) --- login (10.251.1.1 | 10.251.0.1) --- cn01 (10.251.0.11)
                                                           \\-- cn02 (10.251.0.12)

The laptop reaches only login's sshd; compute nodes are reachable only from login. Real munge,
slurmctld, slurmdbd (with MariaDB), slurmd, sshd and Lmod run inside; cn02 has two fake GPUs;
users alice and bob have homes every host sees, and alice a venv and a conda-layout env. The
profile `modules` has Environment Modules (Tcl) on the cluster hosts instead of Lmod.

    python3 sandbox/cluster.py up [--profile lmod|modules] | down | status
    python3 sandbox/cluster.py exec HOST [--user U [--login]] -- CMD...
    python3 sandbox/cluster.py hide-python on|off
    python3 sandbox/cluster.py daemon NAME stop|start|restart     (fault injection)
    python3 sandbox/cluster.py link down|up                       (cut the laptop's network)
    python3 sandbox/cluster.py index off|on     (the package index on login refuses connections)
    python3 sandbox/cluster.py clean-cache

Run as root. `up` is idempotent; `down` stops only what `up` started and removes it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import stat
import string
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
CACHE = Path(os.environ.get("NODEBOOK_SANDBOX_CACHE", "/var/cache/nodebook-sandbox"))
OPT = Path("/opt/nodebook-sandbox")
MARIADB_DATA = CACHE / "mariadb"  # kept by `down`, like the wheels: made once, reused
ACCT_DB = "slurm_acct_db"
USERS = ("alice", "bob")
USER_MARK = "nodebook sandbox user"
MODULE = "conda-python/3.11"
MODULE_PYTHON = OPT / "conda-python" / "3.11" / "bin" / "python3.11"
CUDA_VERSION = "12.4"  # module cuda/12.4: variables and a stand-in nvcc, no toolkit
# The cluster hosts' module system: Lmod (the default), or Debian's Environment Modules, which
# conflicts with lmod: it is extracted once into the cache and laid over their /etc and /usr.
PROFILES = {"lmod": "Lmod", "modules": "Environment Modules (Tcl)"}
EM_PACKAGE = "environment-modules"
# alice's own environments, made by `up` (listed in <state>/envs.json for the tests).
ENV_OWNER = "alice"
VENV = Path("/home/alice/envs/analysis")  # a venv on the module's Python, with nbmarker
CONDA_ENV = Path("/home/alice/conda/envs/torchish")  # conda's layout, its own nbmarker
MARKER_VERSION = "1.0"
PYPI_PORT = 3141
OTP_PORT = 2222
REQUIRED_TOOLS = (
    "unshare", "nsenter", "taskset", "ip", "nft", "sshd", "ssh-keygen", "munged", "slurmctld",
    "slurmd", "sinfo", "useradd", "userdel", "runuser", "gcc", "slurmdbd", "sacctmgr", "mariadbd",
    "mariadb-install-db", "mariadb-admin", "mariadb", "mariadb-dump",
)  # fmt: skip
REQUIRED_FILES = ("/lib/security/pam_slurm_adopt.so",)  # Debian's libpam-slurm-adopt


class SandboxError(Exception):
    """A failure with a message the user can act on."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    cluster: bool  # cluster hosts get their own mount namespace (private /tmp, /etc files)


LAPTOP = Host("laptop", "10.251.1.2", cluster=False)
LOGIN = Host("login", "10.251.0.1", cluster=True)
COMPUTE = (Host("cn01", "10.251.0.11", cluster=True), Host("cn02", "10.251.0.12", cluster=True))
HOSTS = (LAPTOP, LOGIN, *COMPUTE)
LOGIN_PUBLIC = "10.251.1.1"
CLUSTER_DOMAIN = "sandbox.cluster"  # the hosts' fully qualified names: cn01.sandbox.cluster
GPU_HOST = COMPUTE[1]  # cn02: two fake GPUs (Slurm GRES gpu:a100:2) in partition gpu
# ioctl on a /proc/PID/ns/mnt file: the kernel's id of that mount namespace (_IOR(0xb7, 5, u64)).
NS_GET_MNTNS_ID = 0x8008B705


def host_named(name: str) -> Host:
    for host in HOSTS:
        if host.name == name:
            return host
    raise SandboxError(f"unknown host {name!r}; choose one of {', '.join(h.name for h in HOSTS)}")


# --------------------------------------------------------------------------- processes


def run(argv: list[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; raise SandboxError with its stderr on failure."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SandboxError(f"{shlex.join(argv)} failed ({proc.returncode}): {' / '.join(detail)}")
    return proc.stdout


def alive(pid: int) -> bool:
    """True when pid runs; a zombie counts as gone (PID 1 here reaps slowly)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.3)


def terminate(pids: Iterable[int], grace: float = 3.0) -> None:
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def render(name: str, **values: object) -> str:
    """sandbox/templates/NAME with its $placeholders filled in (string.Template).

    Every placeholder needs a value and every value a placeholder, so a typo fails loudly.
    """
    template = string.Template((TEMPLATES / name).read_text())
    wanted = set(template.get_identifiers())
    if wanted != set(values):
        missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
        raise SandboxError(f"template {name}: missing values {missing}, unused values {unused}")
    return template.substitute({key: str(value) for key, value in values.items()})


# --------------------------------------------------------------------------- layout


class Layout:
    """Where everything lives in the state directory."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.run = state / "run"
        self.log = state / "log"
        self.etc = state / "etc"
        self.ssh = state / "ssh"
        self.secrets = state / "secrets"
        self.munge = state / "munge"
        self.slurm = state / "slurm"
        # job_container/tmpfs's BasePath: the jobs' private /tmp are <job_tmp>/<node>/<job>/.<job>
        self.job_tmp = self.slurm / "jobtmp"
        self.pypi = state / "pypi"
        self.mariadb = self.run / "mariadb"  # its socket and own pid file (owned by mysql)
        self.mariadb_socket = self.mariadb / "mariadb.sock"
        self.marker = state / "up.json"
        self.profile = state / "profile"  # lmod or modules, written first by a cold `up`
        self.envs = state / "envs"  # the marker wheel
        self.envs_json = state / "envs.json"

    def anchor_pid(self, host: Host) -> Path:
        return self.run / f"anchor-{host.name}.pid"

    def daemon_pids(self) -> dict[str, Path]:
        pids = {"munged": self.run / "munged.pid", "slurmctld": self.run / "slurmctld.pid"}
        pids["pypi"] = self.run / "pypi.pid"
        pids["mariadbd"] = self.run / "mariadbd.pid"
        pids["slurmdbd"] = self.run / "slurmdbd.pid"
        pids["sshd-login-otp"] = self.run / "sshd-login-otp.pid"
        for host in (LOGIN, *COMPUTE):
            pids[f"sshd-{host.name}"] = self.run / f"sshd-{host.name}.pid"
        for host in COMPUTE:
            pids[f"slurmd-{host.name}"] = self.run / f"slurmd-{host.name}.pid"
        return pids


L = Layout(STATE)


def ns_argv(host: Host, argv: list[str]) -> list[str]:
    """argv that runs `argv` inside `host`'s namespaces."""
    pid = read_pid(L.anchor_pid(host))
    if pid is None or not alive(pid):
        raise SandboxError("the sandbox is not up: run `make sandbox-up`")
    flags = ["-n", "-u", "-m"] if host.cluster else ["-n", "-u"]
    return ["nsenter", "-t", str(pid), *flags, "--", *argv]


def in_host(host: Host, argv: list[str], *, input: str | None = None, check: bool = True) -> str:
    return run(ns_argv(host, argv), input=input, check=check)


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


# --------------------------------------------------------------------------- pieces


def wheelhouse() -> Path:
    """Download the pinned Jupyter wheels once; reuse them while the pins stay the same."""
    reqs = HERE / "wheelhouse.txt"
    # Wheels for the module's Python (the system 3.11 relocated), not for whatever runs pip.
    version = run(
        ["/usr/bin/python3.11", "-c", "import platform; print(platform.python_version())"]
    )
    version = version.strip()
    digest = hashlib.sha256(reqs.read_bytes() + version.encode()).hexdigest()[:12]
    dest = CACHE / f"wheels-{digest}"
    if (dest / ".complete").exists():
        return dest
    python = REPO / ".venv" / "bin" / "python"
    pip_python = str(python) if python.exists() else sys.executable
    print(f"Downloading the cluster's wheelhouse once into {dest} ...", flush=True)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, mode=0o755)
    run([pip_python, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(dest),
         "--python-version", version, "-r", str(reqs)])  # fmt: skip
    (dest / ".complete").write_text(digest + "\n")
    return dest


def build_index(wheels: Path) -> None:
    """A static PEP 503 index over the wheelhouse, served inside the cluster."""
    simple = L.pypi / "simple"
    simple.mkdir(parents=True)
    (L.pypi / "wheels").symlink_to(wheels)
    projects: dict[str, list[str]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        projects.setdefault(name, []).append(
            f'<a href="/wheels/{wheel.name}#sha256={sha}">{wheel.name}</a><br>'
        )
    for name, links in projects.items():
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        )
    rows = "\n".join(f'<a href="/simple/{n}/">{n}</a><br>' for n in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{rows}\n</body></html>\n")


def environment_modules(cache: Path = CACHE) -> Path:
    """Debian's environment-modules, extracted once into the cache (`dpkg-deb -x`) with those of
    its dependencies this machine lacks; its root (etc/, usr/) is returned, reused while cached.

    The package conflicts with lmod, so it cannot be installed beside it; the profile `modules`
    lays this root over the cluster hosts' /etc and /usr instead (`module_system`).
    """
    dest = cache / EM_PACKAGE
    if (dest / ".complete").exists():
        return dest / "root"
    print(f"sandbox: extracting {EM_PACKAGE} once into {dest} ...", flush=True)
    fresh = dest.with_name(dest.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    debs = fresh / "debs"
    debs.mkdir(parents=True)
    wanted, fetched = [EM_PACKAGE], []
    while wanted:
        deb = apt_download(wanted.pop(0), debs)
        fetched.append(deb.name)
        wanted += [name for name in missing_depends(deb) if name not in wanted]
    for name in fetched:
        run(["dpkg-deb", "-x", str(debs / name), str(fresh / "root")])
    shutil.rmtree(debs)
    (fresh / ".complete").write_text("\n".join(fetched) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    fresh.rename(dest)
    return dest / "root"


def apt_download(package: str, where: Path) -> Path:
    """`apt-get download PACKAGE` into where (tried again after an `apt-get update`: no lists)."""
    argv = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    for attempt in (1, 2):
        proc = subprocess.run(argv, cwd=where, capture_output=True, text=True, check=False)
        found = sorted(where.glob(f"{package}_*.deb"))
        if proc.returncode == 0 and found:
            return found[-1]
        if attempt == 1:
            run(["apt-get", "update", "-qq"])
    detail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
    raise SandboxError(f"apt-get download {package} failed: {detail}")


def missing_depends(deb: Path) -> list[str]:
    """The Depends of a .deb that dpkg has not installed (the first of alternatives)."""
    missing = []
    for group in run(["dpkg-deb", "-f", str(deb), "Depends"]).split(","):
        names = [alt.split()[0].split(":")[0] for alt in group.split("|") if alt.strip()]
        status = [run(["dpkg-query", "-W", "-f=${Status}", n], check=False) for n in names]
        if names and not any(s.endswith("ok installed") for s in status):
            missing.append(names[0])
    return missing


def check_tools() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (namespaces, users, daemons): run it as root")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    missing += [f for f in REQUIRED_FILES if not Path(f).exists()]
    if missing:
        raise SandboxError(f"missing tools: {', '.join(missing)}; run `make deps` first")


def create_users() -> None:
    created: list[str] = []
    for user in USERS:
        out = run(["getent", "passwd", user], check=False)
        if out:
            if USER_MARK not in out:
                raise SandboxError(
                    f"user {user} exists and was not made by the sandbox; remove it or use "
                    "another machine"
                )
        else:
            run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", USER_MARK, user])
        created.append(user)
        home = Path(f"/home/{user}")
        home.chmod(0o700)
    (L.state / "users").write_text("\n".join(created) + "\n")
    # alice can also log in with a password and a verification code (port 2222); bob cannot.
    password = secrets.token_urlsafe(12)
    otp = f"{secrets.randbelow(10**6):06d}"
    write_secret(L.secrets / "alice.password", password)
    write_secret(L.secrets / "alice.otp", otp)
    run(["chpasswd"], input=f"alice:{password}\n")
    # With UsePAM no, a locked "!" password blocks key login: "*" means "no password, not locked".
    run(["usermod", "-p", "*", "bob"])


def write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def keygen(path: Path, comment: str) -> str:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_suffix(".pub").read_text().strip()


def setup_ssh() -> None:
    (L.ssh / "hostkeys").mkdir(parents=True)
    host_keys = {}
    for host in (LOGIN, *COMPUTE):
        pub = keygen(L.ssh / "hostkeys" / host.name, f"{host.name}-hostkey")
        host_keys[host.name] = " ".join(pub.split()[:2])
    # Laptop side: the user's keys and the login node's key, as on a real user's laptop: it has
    # never seen a compute node's key.
    known = [
        f"login,{LOGIN_PUBLIC} {host_keys['login']}",
        f"[login]:{OTP_PORT},[{LOGIN_PUBLIC}]:{OTP_PORT} {host_keys['login']}",
    ]
    (L.ssh / "known_hosts").write_text("\n".join(known) + "\n")
    # Cluster side: the site-wide /etc/ssh/ssh_known_hosts of every cluster host knows every
    # host (short names, FQDNs, addresses); the laptop shares the machine's /etc, so the cluster
    # hosts get a copy of /etc/ssh of their own (anchor-cluster.sh).
    cluster_known = "\n".join(
        f"{h.name},{h.name}.{CLUSTER_DOMAIN},{h.address} {host_keys[h.name]}"
        for h in (LOGIN, *COMPUTE)
    )
    shutil.copytree("/etc/ssh", L.etc / "ssh", symlinks=True)
    (L.etc / "ssh" / "ssh_known_hosts").write_text(cluster_known + "\n")
    (L.etc / "ssh" / "ssh_known_hosts").chmod(0o644)
    for user in USERS:
        laptop_pub = keygen(L.ssh / f"id_{user}", f"{user}@laptop")
        dot_ssh = Path(f"/home/{user}/.ssh")
        dot_ssh.mkdir(mode=0o700, exist_ok=True)
        # The cluster-internal key (shared home), as sites set it up for login -> node hops.
        internal = dot_ssh / "id_ed25519"
        internal.unlink(missing_ok=True)
        internal.with_suffix(".pub").unlink(missing_ok=True)
        internal_pub = keygen(internal, f"{user}@cluster")
        (dot_ssh / "authorized_keys").write_text(f"{laptop_pub}\n{internal_pub}\n")
        # alice has logged in to the nodes before: her own known_hosts, hashed as Debian's ssh
        # writes it (HashKnownHosts); bob relies on the site-wide file alone.
        known_file = dot_ssh / "known_hosts"
        known_file.unlink(missing_ok=True)
        if user == ENV_OWNER:
            known_file.write_text(cluster_known + "\n")
            run(["ssh-keygen", "-q", "-H", "-f", str(known_file)])
            known_file.with_name("known_hosts.old").unlink(missing_ok=True)
        for path in dot_ssh.iterdir():
            path.chmod(0o600 if path.suffix != ".pub" else 0o644)
        run(["chown", "-R", f"{user}:{user}", str(dot_ssh)])
    (L.ssh / "config").write_text(
        render("ssh_config", ssh_dir=L.ssh, login_public=LOGIN_PUBLIC, otp_port=OTP_PORT)
    )  # fmt: skip
    # Compute nodes: PAM's account stack runs pam_slurm_adopt (pam-sshd-node).
    auth = {h.name: render("sshd-auth-node.conf") for h in COMPUTE}
    auth[LOGIN.name] = render("sshd-auth-keys.conf")
    for host in (LOGIN, *COMPUTE):
        text = render("sshd.conf", pid_file=L.run / f"sshd-{host.name}.pid", port=22,
                      host_key=L.ssh / "hostkeys" / host.name, users=" ".join(USERS),
                      auth=auth[host.name])  # fmt: skip
        (L.etc / f"sshd-{host.name}.conf").write_text(text)
    text = render("sshd.conf", pid_file=L.run / "sshd-login-otp.pid", port=OTP_PORT,
                  host_key=L.ssh / "hostkeys" / "login", users="alice",
                  auth=render("sshd-auth-prompting.conf"))  # fmt: skip
    (L.etc / "sshd-login-otp.conf").write_text(text)


def setup_pam() -> None:
    module = L.etc / "pam_verification_code.so"
    run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(module),
         str(HERE / "pam_verification_code.c"), "-lpam"])  # fmt: skip
    (L.etc / "pam-sshd").write_text(render("pam-sshd", module=module, secrets=L.secrets))
    (L.etc / "pam-sshd-node").write_text(render("pam-sshd-node"))


def setup_shells() -> None:
    """Shells that talk, as on real clusters: sandbox-site.sh for the cluster hosts' login shells
    (stdout and stderr; anchor-cluster.sh overlays <etc>/profile.d on their /etc/profile.d), and
    a line on stderr first in each user's ~/.bashrc (every command sshd runs reads it)."""
    profile_d = L.etc / "profile.d"
    profile_d.mkdir(mode=0o755)
    (profile_d / "sandbox-site.sh").write_text(render("profile-site.sh"))
    noise = render("bashrc-site.sh")
    for user in USERS:
        bashrc = Path(f"/home/{user}/.bashrc")
        text = bashrc.read_text() if bashrc.exists() else ""
        if not text.startswith(noise):
            bashrc.write_text(noise + text)
            shutil.chown(bashrc, user, user)


def setup_modules(profile: str) -> None:
    """The modules' software in OPT, their modulefiles for the profile's module system, and
    (profile modules) Environment Modules with the top layer of the hosts' /etc."""
    prefix = OPT / "conda-python" / "3.11"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    # A relocated copy of the system interpreter: it finds its stdlib through lib/python3.11,
    # has no site packages (so no Jupyter), and keeps working when /usr/bin/python3* is hidden.
    shutil.copy2("/usr/bin/python3.11", MODULE_PYTHON)
    (prefix / "bin" / "python3").symlink_to("python3.11")
    (prefix / "bin" / "python").symlink_to("python3.11")
    (prefix / "lib" / "python3.11").symlink_to("/usr/lib/python3.11")
    cuda = OPT / "cuda" / CUDA_VERSION
    (cuda / "bin").mkdir(parents=True)
    (cuda / "bin" / "nvcc").write_text(render("nvcc", version=CUDA_VERSION))
    (cuda / "bin" / "nvcc").chmod(0o755)
    write_modulefiles(profile, OPT / "modulefiles", prefix, cuda)
    (L.etc / "modulespath").write_text(render("modulespath", modulefiles=OPT / "modulefiles"))
    run(["chmod", "-R", "a+rX", str(OPT)])
    if profile == "modules":
        environment_modules()
        modules_etc(L.etc)


def write_modulefiles(profile: str, where: Path, python: Path, cuda: Path) -> None:
    """conda-python/3.11 and cuda/12.4 in where: Lua for Lmod, Tcl for Environment Modules
    (which reads no Lua), the same variables in both."""
    lua = profile == "lmod"
    files = {
        MODULE: render("conda-python.lua" if lua else "conda-python.tcl", prefix=python),
        f"cuda/{CUDA_VERSION}": render(
            "cuda.lua" if lua else "cuda.tcl", prefix=cuda, version=CUDA_VERSION
        ),
    }
    for name, text in files.items():
        path = where / (f"{name}.lua" if lua else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def modules_etc(etc: Path) -> Path:
    """The top layer of the cluster hosts' /etc in the profile modules (anchor-modules.sh): the
    site's profile script, Lmod's lmod.sh hidden (an overlay whiteout: a 0/0 character device)
    and Environment Modules' modulespath (the sandbox's modulefiles, as for Lmod)."""
    layer = etc / "modules-etc"
    (layer / "profile.d").mkdir(parents=True)
    shutil.copy2(etc / "profile.d" / "sandbox-site.sh", layer / "profile.d")
    os.mknod(layer / "profile.d" / "lmod.sh", stat.S_IFCHR | 0o644, os.makedev(0, 0))
    (layer / "environment-modules").mkdir()
    shutil.copy2(etc / "modulespath", layer / "environment-modules")
    return layer


def module_system(profile: str, etc: Path) -> str:
    """anchor-cluster.sh's mounts of the profile's module system (its first mounts)."""
    if profile == "lmod":
        return render("anchor-lmod.sh", etc=shlex.quote(str(etc)))
    root = shlex.quote(str(environment_modules()))
    return render("anchor-modules.sh", etc=shlex.quote(str(etc)), root=root)


def current_profile() -> str:
    """The profile the sandbox was brought up in (lmod when it never recorded one)."""
    with contextlib.suppress(FileNotFoundError):
        return L.profile.read_text().strip() or "lmod"
    return "lmod"


# --------------------------------------------------------------------------- alice's envs


def marker_files(where: str, installer: str | None) -> dict[str, str]:
    """The tiny pure-Python package nbmarker (path: text); WHERE says which env it is in.

    With an installer, as installed (a wheel has no INSTALLER file: pip writes its own).
    """
    info = f"nbmarker-{MARKER_VERSION}.dist-info"
    files = {
        "nbmarker/__init__.py": f'"""Made by the nodebook sandbox."""\n\nWHERE = "{where}"\n',
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: nbmarker\n"
        f"Version: {MARKER_VERSION}\nSummary: Tells which sandbox environment it is in\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: nodebook-sandbox\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if installer:
        files[f"{info}/INSTALLER"] = f"{installer}\n"
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        rows.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    return files


def build_marker_wheel() -> Path:
    L.envs.mkdir(mode=0o755)
    wheel = L.envs / f"nbmarker-{MARKER_VERSION}-py3-none-any.whl"
    files = marker_files("venv", installer=None)
    with zipfile.ZipFile(wheel, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    wheel.chmod(0o644)
    return wheel


def seed_pip(prefix: Path, wheels: Path, installer: str) -> None:
    """pip from the wheelhouse, unpacked into prefix's site-packages with its entry points (as
    virtualenv seeds a venv, or conda installs its pip package): no pip run, no network."""
    site = prefix / "lib" / "python3.11" / "site-packages"
    with zipfile.ZipFile(next(wheels.glob("pip-*.whl"))) as whl:
        whl.extractall(site)
    for info in site.glob("pip-*.dist-info"):
        (info / "INSTALLER").write_text(f"{installer}\n")
    for name in ("pip", "pip3", "pip3.11"):
        script = prefix / "bin" / name
        script.write_text(render("pip-script", python=prefix / "bin" / "python"))
        script.chmod(0o755)


def make_venv(wheels: Path) -> None:
    """A venv on the module's Python (`python -m venv`), pip seeded from the wheelhouse."""
    VENV.parent.mkdir()
    run([str(MODULE_PYTHON.with_name("python3")), "-m", "venv", "--without-pip", str(VENV)])
    seed_pip(VENV, wheels, installer="pip")


def make_conda_env(wheels: Path) -> None:
    """A prefix laid out as `conda create` makes one (conda itself cannot be installed here).

    Its python is a copy of the module's; its site-packages holds nbmarker and pip, not
    ipykernel.
    """
    (CONDA_ENV / "bin").mkdir(parents=True)
    shutil.copy2(MODULE_PYTHON, CONDA_ENV / "bin" / "python3.11")
    (CONDA_ENV / "bin" / "python3").symlink_to("python3.11")
    (CONDA_ENV / "bin" / "python").symlink_to("python3.11")
    # Its own lib/python3.11: the stdlib linked in (not Debian's PEP 668 marker), site-packages
    # its own.
    lib = CONDA_ENV / "lib" / "python3.11"
    lib.mkdir(parents=True)
    for entry in os.scandir("/usr/lib/python3.11"):
        if entry.name not in ("site-packages", "dist-packages", "EXTERNALLY-MANAGED"):
            (lib / entry.name).symlink_to(entry.path)
    for path, text in marker_files("conda", installer="conda").items():
        (lib / "site-packages" / path).parent.mkdir(parents=True, exist_ok=True)
        (lib / "site-packages" / path).write_text(text)
    seed_pip(CONDA_ENV, wheels, installer="conda")
    # Debian's python3.11 reads lib/python3.11/dist-packages where conda's reads site-packages.
    (lib / "dist-packages").symlink_to("site-packages")
    version = run([str(MODULE_PYTHON), "-c", "import platform; print(platform.python_version())"])
    (CONDA_ENV / "conda-meta").mkdir()
    (CONDA_ENV / "conda-meta" / "history").write_text(
        render("conda-history", prefix=CONDA_ENV, python_version=version.strip())
    )
    hooks = CONDA_ENV / "etc" / "conda"
    for phase, template in (
        ("activate", "conda-activate.sh"),
        ("deactivate", "conda-deactivate.sh"),
    ):
        (hooks / f"{phase}.d").mkdir(parents=True)
        (hooks / f"{phase}.d" / "nodebook-marker.sh").write_text(render(template))
    # conda lists the environments it made here.
    dot_conda = Path(f"/home/{ENV_OWNER}/.conda")
    dot_conda.mkdir(exist_ok=True)
    (dot_conda / "environments.txt").write_text(f"{CONDA_ENV}\n")


def make_envs(wheels: Path) -> subprocess.Popen[bytes]:
    """alice's venv and conda env; her pip installs nbmarker into the venv while the daemons
    start (`finish_envs` waits for it)."""
    make_venv(wheels)
    make_conda_env(wheels)
    home = Path(f"/home/{ENV_OWNER}")
    for top in (VENV.parent, home / "conda", home / ".conda"):
        give_to(ENV_OWNER, top)
    wheel = build_marker_wheel()
    argv = ["runuser", "-u", ENV_OWNER, "--", str(VENV / "bin" / "python"), "-m", "pip",
            "install", "--disable-pip-version-check", "--no-cache-dir", "--no-index",
            "--no-deps", "-q", str(wheel)]  # fmt: skip
    return spawn(argv, L.log / "envs.log")


def give_to(user: str, top: Path) -> None:
    """chown -R that never follows a symbolic link (the stdlib links point into /usr)."""
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(top):
        for name in [".", *dirs, *files]:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def finish_envs(marker_install: subprocess.Popen[bytes]) -> None:
    """Wait for nbmarker's install, then record both environments in <state>/envs.json."""
    if marker_install.wait(timeout=120) != 0:
        raise SandboxError(f"installing nbmarker into alice's venv failed: see {L.log}/envs.log")
    envs = {
        "venv": {"owner": ENV_OWNER, "prefix": str(VENV), "python": str(VENV / "bin" / "python"),
                 "module": MODULE, "marker": "venv"},
        "conda": {"owner": ENV_OWNER, "prefix": str(CONDA_ENV),
                  "python": str(CONDA_ENV / "bin" / "python"), "marker": "conda",
                  "activate_variable": "NBMARKER_ACTIVATED"},
    }  # fmt: skip
    L.envs_json.write_text(json.dumps(envs, indent=2) + "\n")


def write_hosts_and_slurm() -> None:
    addresses = {f"{h.name}_address": h.address for h in HOSTS}
    (L.etc / "hosts").write_text(render("hosts", domain=CLUSTER_DOMAIN, **addresses))
    slurm_etc = L.etc / "slurm"
    slurm_etc.mkdir()
    (L.slurm / "ctld").mkdir(parents=True)
    for host in COMPUTE:
        (L.slurm / host.name).mkdir()
    (slurm_etc / "slurm.conf").write_text(
        render("slurm.conf", login_address=LOGIN.address, cn01_address=COMPUTE[0].address,
               cn02_address=COMPUTE[1].address, munge_socket=L.munge / "munge.socket.2",
               slurm_state=L.slurm, run=L.run, log=L.log)
    )  # fmt: skip
    (slurm_etc / "gres.conf").write_text(render("gres.conf"))
    (slurm_etc / "job_container.conf").write_text(render("job_container.conf", base=L.job_tmp))
    write_secret(
        slurm_etc / "slurmdbd.conf",  # slurmdbd insists on 0600
        render("slurmdbd.conf", munge_socket=L.munge / "munge.socket.2", run=L.run, log=L.log,
               database=ACCT_DB).rstrip("\n"),
    )  # fmt: skip


def setup_mariadb() -> None:
    """MariaDB's config and socket dir; its data dir is made once and kept in the cache."""
    L.mariadb.mkdir(mode=0o755)
    run(["chown", "mysql:mysql", str(L.mariadb)])
    cnf = L.etc / "mariadb.cnf"
    cnf.write_text(render("mariadb.cnf", datadir=MARIADB_DATA, socket=L.mariadb_socket,
                          pid_file=L.mariadb / "mariadbd.pid"))  # fmt: skip
    version = run(["mariadbd", "--version"]).strip()
    stamp = MARIADB_DATA / ".nodebook-sandbox"
    if stamp.exists() and stamp.read_text().strip() == version:
        return
    print(f"sandbox: initialising MariaDB's data directory once in {MARIADB_DATA} ...", flush=True)
    fresh = MARIADB_DATA.with_name(MARIADB_DATA.name + ".new")
    for path in (fresh, MARIADB_DATA):
        shutil.rmtree(path, ignore_errors=True)
    fresh.mkdir(mode=0o700, parents=True)
    run(["chown", "mysql:mysql", str(fresh)])
    run(["mariadb-install-db", f"--defaults-file={cnf}", f"--datadir={fresh}", "--user=mysql",
         "--auth-root-authentication-method=socket", "--skip-test-db"])  # fmt: skip
    (fresh / stamp.name).write_text(version + "\n")
    fresh.rename(MARIADB_DATA)


def mariadb(argv: list[str], *, input: str | None = None) -> str:
    """A MariaDB client (mariadb, mariadb-dump) on login, as root over the socket."""
    return in_host(LOGIN, [argv[0], f"--socket={L.mariadb_socket}", *argv[1:]],
                   input=input)  # fmt: skip


def accounting_snapshot() -> Path:
    """The accounting database as `setup_accounting` left it, dumped once into the cache."""
    slurmdbd = Path(shutil.which("slurmdbd") or "slurmdbd").stat()
    key = f"{render('accounting.sacctmgr')} {slurmdbd.st_size} {slurmdbd.st_mtime_ns} "
    key += run(["mariadbd", "--version"])
    return CACHE / f"accounting-{hashlib.sha256(key.encode()).hexdigest()[:12]}.sql"


def restore_accounting() -> bool:
    """Empty accounting for each new cluster (slurmctld's job ids start again at 1).

    The database is restored from the cached snapshot when there is one (0.2 s instead of the
    2.7 s sacctmgr takes); True then, and `setup_accounting` has nothing left to do.
    """
    mariadb(["mariadb", "-e", f"DROP DATABASE IF EXISTS {ACCT_DB}"])
    snapshot = accounting_snapshot()
    if snapshot.exists():
        mariadb(["mariadb"], input=snapshot.read_text())
        return True
    return False


def setup_accounting() -> None:
    """The cluster, its accounts, users and QOS in slurmdbd; adding what exists changes nothing."""
    commands = [ln for ln in render("accounting.sacctmgr").splitlines() if not ln.startswith("#")]
    # sacctmgr exits 1 for "Nothing new added" too; it writes only real errors to stderr.
    proc = subprocess.run(ns_argv(LOGIN, ["sacctmgr", "-i"]), input="\n".join(commands) + "\n",
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.stderr.strip():
        raise SandboxError(f"sacctmgr failed: {' / '.join(proc.stderr.strip().splitlines())}")
    snapshot = accounting_snapshot()
    dump = mariadb(["mariadb-dump", "--single-transaction", "--routines", "--databases", ACCT_DB])
    partial = snapshot.with_suffix(".partial")
    partial.write_text(dump)
    partial.rename(snapshot)


def start_munge() -> None:
    L.munge.mkdir(mode=0o755)
    key = L.munge / "munge.key"
    write_secret(key, secrets.token_hex(512))
    key.chmod(0o400)
    run(["chown", "-R", "munge:munge", str(L.munge)])
    log = L.log / "munged.log"
    log.touch(mode=0o640)
    run(["chown", "munge:munge", str(log)])
    # munged writes its pid file itself; its run dir must belong to it.
    pid_dir = L.run / "munge"
    pid_dir.mkdir(mode=0o755)
    run(["chown", "munge:munge", str(pid_dir)])
    run(["runuser", "-u", "munge", "--", "munged", f"--socket={L.munge}/munge.socket.2",
         f"--key-file={key}", f"--pid-file={pid_dir}/munged.pid", f"--log-file={log}",
         f"--seed-file={L.munge}/munged.seed"])  # fmt: skip
    wait_until(lambda: (pid_dir / "munged.pid").exists(), 10, "munged")
    (L.run / "munged.pid").symlink_to(pid_dir / "munged.pid")


def start_anchor(host: Host, cpu: int | None) -> None:
    """A process that holds the host's namespaces open, with the host's mounts made inside;
    they are made on ``cpu`` (see anchor_cpu; only their making: the anchor then sleeps)."""
    if host.cluster:
        # login's prompting sshd uses the sandbox's PAM file, the nodes' sshd pam_slurm_adopt.
        pam = L.etc / ("pam-sshd" if host is LOGIN else "pam-sshd-node")
        host_mounts = shlex.join(["mount", "--bind", str(pam), "/etc/pam.d/sshd"])
        script = render("anchor-cluster.sh", host=shlex.quote(host.name),
                        etc=shlex.quote(str(L.etc)), host_mounts=host_mounts,
                        module_system=module_system(current_profile(), L.etc))  # fmt: skip
        argv = ["unshare", "--net", "--uts", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", script]  # fmt: skip
    else:
        script = render("anchor-laptop.sh", host=shlex.quote(host.name))
        argv = ["unshare", "--net", "--uts", "--", "/bin/sh", "-c", script]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = spawn(argv, L.log / f"anchor-{host.name}.log")
    L.anchor_pid(host).write_text(f"{proc.pid}\n")

    def ready() -> bool:
        if proc.poll() is not None:
            raise SandboxError(
                f"host {host.name} failed to start: see {L.log}/anchor-{host.name}.log"
            )
        return Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep"

    wait_until(ready, 10, f"host {host.name}")


def mount_ns_id(pid: int) -> int | None:
    """The kernel's id of the mount namespace of process ``pid`` (None: this kernel does not
    tell; NS_GET_MNTNS_ID came with Linux 6.11)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, NS_GET_MNTNS_ID, buf)
    except OSError:
        return None
    finally:
        os.close(fd)
    return int.from_bytes(buf, sys.byteorder)


def next_mount_ns_ids() -> dict[int, int]:
    """For each CPU we may run on, the id a mount namespace made there now gets (a throwaway one
    is made to see): no namespace made there later gets a lower one. Empty: the kernel does
    not tell."""
    ids = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        argv = ["taskset", "-c", str(cpu), "unshare", "--mount", "--", "sh", "-c", "echo; cat"]
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None and proc.stdin is not None
            started = proc.stdout.readline()  # unshare is done: the same process now runs sh
            ns = mount_ns_id(proc.pid) if started else None
            proc.stdin.close()
        if not started:
            raise SandboxError(f"could not make a mount namespace on CPU {cpu}: {argv}")
        if ns is None:
            return {}
        ids[cpu] = ns
    return ids


def anchor_cpu() -> int | None:
    """The CPU to make the hosts' namespaces on, so that each compute node's mount namespace
    has a lower id than every mount namespace made after it (None: no need to pin).

    job_container/tmpfs holds each job's namespace open by bind-mounting its /proc/PID/ns/mnt,
    made by slurmstepd in the node's namespace, and Linux refuses that mount (EINVAL) when the
    job's namespace has an id not above the caller's (it takes it for a mount loop). Linux
    6.18 hands out those ids in per-CPU batches of 4096, so ids are not in order of making
    across CPUs: a node made on a CPU with a later batch than another CPU's fails the job
    launches whose namespace that other CPU makes. The CPU whose next id is the lowest makes
    ids below every other CPU's, now and later (a used-up batch is followed by a new one above
    all others).
    """
    ids = next_mount_ns_ids()
    return min(ids, key=ids.__getitem__) if ids else None


def check_mount_ns_order() -> None:
    """Each compute node's mount namespace has a lower id than any made from now on (see
    anchor_cpu), or say which node will fail its jobs' launches and why."""
    later = next_mount_ns_ids()
    if not later:
        return
    cpu = min(later, key=later.__getitem__)
    for host in COMPUTE:
        pid = read_pid(L.anchor_pid(host))
        node = mount_ns_id(pid) if pid is not None else None
        if node is not None and node >= later[cpu]:
            raise SandboxError(
                f"{host.name}'s mount namespace has id {node}, but one made on CPU {cpu} now "
                f"gets {later[cpu]}: Linux would refuse job_container/tmpfs's mounts for such "
                "jobs (EINVAL); run `down` and `up` again"
            )


def setup_network() -> None:
    pid = {h.name: str(read_pid(L.anchor_pid(h))) for h in HOSTS}
    run(["ip", "link", "add", "name", "eth0", "netns", pid["laptop"], "type", "veth",
         "peer", "name", "pub0", "netns", pid["login"]])  # fmt: skip
    for host in COMPUTE:
        run(["ip", "link", "add", "name", "eth0", "netns", pid[host.name], "type", "veth",
             "peer", "name", f"v-{host.name}", "netns", pid["login"]])  # fmt: skip
    login = [
        "link set lo up",
        "link add br0 type bridge",
        f"addr add {LOGIN.address}/24 dev br0",
        "link set br0 up",
        f"addr add {LOGIN_PUBLIC}/24 dev pub0",
        "link set pub0 up",
    ]
    for host in COMPUTE:
        login += [f"link set v-{host.name} master br0", f"link set v-{host.name} up"]
    in_host(LOGIN, ["ip", "-batch", "-"], input="\n".join(login) + "\n")
    for host in COMPUTE:
        cmds = f"link set lo up\naddr add {host.address}/24 dev eth0\nlink set eth0 up\n"
        in_host(host, ["ip", "-batch", "-"], input=cmds)
    cmds = f"link set lo up\naddr add {LAPTOP.address}/24 dev eth0\nlink set eth0 up\n"
    in_host(LAPTOP, ["ip", "-batch", "-"], input=cmds)
    # The laptop side of login admits ssh only, as a site firewall would.
    in_host(LOGIN, ["nft", "-f", "-"], input=render("login-firewall.nft", otp_port=OTP_PORT))


def fake_gpu_devices(host: Host) -> None:
    """Give `host` a /dev of its own (in its mount namespace only) with two fake NVIDIA GPUs.

    A tmpfs gets copies of the machine's device files (null, zero, urandom, tty, ptmx, ...: the
    same devices), its links (fd, std*), bind mounts of its directories (pts, shm, ...), and
    /dev/nvidia0, /dev/nvidia1 and /dev/nvidiactl made with mknod (char 195:0, 195:1, 195:255,
    as the NVIDIA driver makes them); then it is moved over /dev. Copies, not bind mounts: the
    kernel finds the ptys of /dev/ptmx in the pts directory next to it. Opening a fake GPU
    fails (no driver); Slurm only stats them.
    """
    stage = L.state / f"dev-{host.name}"
    stage.mkdir()
    script = [["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,size=1m", f"dev-{host.name}",
               str(stage)]]  # fmt: skip
    for entry in sorted(os.scandir("/dev"), key=lambda e: e.name):
        # Virtual consoles are left out (nothing here uses them), and so are real NVIDIA files.
        if re.fullmatch(r"tty\d+|vcs\w*|nvidia.*", entry.name):
            continue
        target = str(stage / entry.name)
        if entry.is_dir(follow_symlinks=False):
            script += [["mkdir", target], ["mount", "--rbind", entry.path, target]]
        else:
            script.append(["cp", "-a", entry.path, target])
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        script.append(["mknod", "-m", "666", str(stage / name), "c", "195", str(minor)])
    script.append(["mount", "--move", str(stage), "/dev"])
    in_host(host, ["sh", "-e"], input="".join(shlex.join(argv) + "\n" for argv in script))


@dataclass(frozen=True)
class Daemon:
    """A restartable daemon: its host, how it starts, and how to tell that it answers."""

    host: Host
    argv: list[str]
    foreground: bool = False  # stays in the foreground: spawned, with its pid file written here
    ready: Callable[[], bool] | None = None


def daemons() -> dict[str, Daemon]:
    """Every daemon `daemon NAME ...` can stop and start (each has a pid file in L.run)."""
    table: dict[str, Daemon] = {}
    table["pypi"] = Daemon(
        LOGIN,
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-m", "http.server",
         str(PYPI_PORT), "--bind", LOGIN.address, "--directory", str(L.pypi)],
        foreground=True, ready=lambda: port_open(LOGIN, LOGIN.address, PYPI_PORT),
    )  # fmt: skip
    for name, host in [("login", LOGIN), ("login-otp", LOGIN)] + [(h.name, h) for h in COMPUTE]:
        conf, log = L.etc / f"sshd-{name}.conf", L.log / f"sshd-{name}.log"
        table[f"sshd-{name}"] = Daemon(host, ["/usr/sbin/sshd", "-f", str(conf), "-E", str(log)])
    table["mariadbd"] = Daemon(
        LOGIN, ["mariadbd", f"--defaults-file={L.etc / 'mariadb.cnf'}", "--user=mysql"],
        foreground=True, ready=mariadb_answers,
    )  # fmt: skip
    # slurmdbd finds MariaDB's socket through libmariadb's MYSQL_UNIX_PORT (StorageHost=localhost).
    table["slurmdbd"] = Daemon(
        LOGIN, ["env", f"MYSQL_UNIX_PORT={L.mariadb_socket}", "slurmdbd"],
        ready=slurmdbd_answers,
    )  # fmt: skip
    # A restart of slurmctld keeps its state: jobs survive it.
    table["slurmctld"] = Daemon(LOGIN, ["slurmctld"], ready=slurm_answers)
    for host in COMPUTE:
        table[f"slurmd-{host.name}"] = Daemon(host, ["slurmd", "-N", host.name])
    return table


def start_daemon(name: str, *, wait: bool = False) -> None:
    """Start one daemon; with wait, until its pid file names a live process and it answers."""
    spec, pid_file = daemons()[name], L.daemon_pids()[name]
    if spec.foreground:
        proc = spawn(ns_argv(spec.host, spec.argv), L.log / f"{name}.log")
        pid_file.write_text(f"{proc.pid}\n")
    else:
        in_host(spec.host, spec.argv)
    if wait:
        wait_until(lambda: (p := read_pid(pid_file)) is not None and alive(p), 20, name)
        if spec.ready is not None:
            wait_until(spec.ready, 30, f"{name} to answer")


def start_daemons() -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for name in daemons():
        if name.startswith(("pypi", "sshd-")):
            start_daemon(name)
    # Accounting first: slurmctld registers with slurmdbd, which needs MariaDB and the cluster.
    start_daemon("mariadbd", wait=True)
    restored = restore_accounting()
    start_daemon("slurmdbd", wait=True)
    if not restored:
        setup_accounting()
    start_daemon("slurmctld")
    for host in COMPUTE:
        start_daemon(f"slurmd-{host.name}")

    def pids_written() -> bool:
        return all(read_pid(p) is not None for p in L.daemon_pids().values())

    wait_until(pids_written, 20, "the daemons' pid files")

    def nodes_idle() -> bool:
        out = in_host(LOGIN, ["sinfo", "-h", "-N", "-o", "%N %t"], check=False)
        states = dict(line.split() for line in out.splitlines() if line.strip())
        return all(states.get(h.name) == "idle" for h in COMPUTE)

    wait_until(nodes_idle, 30, "the compute nodes to register with slurmctld")
    wait_until(lambda: port_open(LOGIN, LOGIN.address, PYPI_PORT), 10, "the package index")


def answers(host: Host, argv: list[str]) -> bool:
    return subprocess.run(ns_argv(host, argv), capture_output=True).returncode == 0


def slurm_answers() -> bool:
    return answers(LOGIN, ["sinfo", "-h"])


def mariadb_answers() -> bool:
    return answers(LOGIN, ["mariadb-admin", f"--socket={L.mariadb_socket}", "ping"])


def slurmdbd_answers() -> bool:
    return answers(LOGIN, ["sacctmgr", "-n", "show", "cluster"])


def port_open(host: Host, address: str, port: int) -> bool:
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)"
    # The system's Python: a cluster host has its own /tmp, where a checkout's venv may live.
    argv = ["/usr/bin/python3", "-c", probe, address, str(port)]
    return subprocess.run(ns_argv(host, argv), capture_output=True, check=False).returncode == 0


# --------------------------------------------------------------------------- commands


def is_up() -> bool:
    if not L.marker.exists():
        return False
    pids = [read_pid(L.anchor_pid(h)) for h in HOSTS]
    pids += [read_pid(p) for p in L.daemon_pids().values()]
    return all(p is not None and alive(p) for p in pids)


def fail_point(step: str) -> None:
    """Test hook: NODEBOOK_SANDBOX_FAIL_AFTER=<step> makes `up` fail there (tests clean-up)."""
    if os.environ.get("NODEBOOK_SANDBOX_FAIL_AFTER") == step:
        raise SandboxError(f"failing after {step!r} as NODEBOOK_SANDBOX_FAIL_AFTER asks")


def up(profile: str = "lmod") -> None:
    check_tools()
    # Also when partly up: a partial sandbox of another profile is not removed unasked either.
    if L.state.exists() and current_profile() != profile:
        raise SandboxError(
            f"the sandbox is up in profile {current_profile()}, not {profile}: run "
            f"`python3 sandbox/cluster.py down` first, then `up --profile {profile}`"
        )
    if is_up():
        wheels = wheelhouse()
        if (L.pypi / "wheels").resolve() != wheels.resolve():
            shutil.rmtree(L.pypi)
            build_index(wheels)
            print("sandbox: package index rebuilt for the new wheelhouse pins")
        if index_is_off():
            index(True)
        print(f"sandbox: already up (profile {profile})")
        return
    if L.state.exists() or OPT.exists():
        print("sandbox: found a partial sandbox; removing it first", flush=True)
        down(quiet=True)
    started = time.monotonic()
    envs: Future[subprocess.Popen[bytes]] | None = None
    try:
        # alice's envs are made on a thread while the hosts and daemons start (about 1 s).
        with ThreadPoolExecutor(max_workers=1) as pool:
            wheels = wheelhouse()
            for path in (L.state, L.run, L.log, L.etc, L.ssh):
                path.mkdir(mode=0o755, parents=True, exist_ok=True)
            L.secrets.mkdir(mode=0o700)
            L.profile.write_text(profile + "\n")
            create_users()
            setup_shells()
            setup_modules(profile)
            envs = pool.submit(make_envs, wheels)
            setup_ssh()
            setup_pam()
            write_hosts_and_slurm()
            setup_mariadb()
            build_index(wheels)
            start_munge()
            cpu = anchor_cpu()
            for host in HOSTS:
                start_anchor(host, cpu)
            check_mount_ns_order()
            setup_network()
            fake_gpu_devices(GPU_HOST)
            fail_point("network")
            start_daemons()
            finish_envs(envs.result())
        L.marker.write_text(json.dumps({"started": time.time(), "profile": profile}) + "\n")
    except BaseException:
        print("sandbox: bring-up failed; cleaning up", file=sys.stderr, flush=True)
        # The pool has waited for make_envs; its pip may still run.
        if envs is not None and envs.done() and envs.exception() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(envs.result().pid, signal.SIGKILL)
            envs.result().wait()
        down(quiet=True)
        raise
    print(f"sandbox: up in {time.monotonic() - started:.1f}s, profile {profile}")
    print(f"  ssh -F {L.ssh}/config alice@login   (from the laptop: make sandbox-shell)")


def namespace_pids(anchor: int) -> list[int]:
    """Every process that lives in the anchor's network namespace (the anchor included)."""
    try:
        target = os.readlink(f"/proc/{anchor}/ns/net")
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == target:
                    found.append(int(entry))
            except (FileNotFoundError, PermissionError):
                continue
    return found


def down(quiet: bool = False) -> None:
    started = time.monotonic()
    pids: list[int] = []
    for host in HOSTS:
        anchor = read_pid(L.anchor_pid(host))
        if anchor is not None and alive(anchor):
            pids += namespace_pids(anchor)
    munged = read_pid(L.run / "munged.pid")
    if munged is not None:
        pids.append(munged)
    terminate(set(pids))
    users_file = L.state / "users"
    for user in users_file.read_text().split() if users_file.exists() else []:
        if USER_MARK in run(["getent", "passwd", user], check=False):
            run(["userdel", "--force", "--remove", user], check=False)
    shutil.rmtree(L.state, ignore_errors=True)
    shutil.rmtree(OPT, ignore_errors=True)
    if not quiet:
        print(f"sandbox: down in {time.monotonic() - started:.1f}s")


def status() -> int:
    if not L.state.exists():
        print("sandbox: down")
        return 3
    rows = []
    for host in HOSTS:
        pid = read_pid(L.anchor_pid(host))
        rows.append((f"host {host.name}", pid, pid is not None and alive(pid)))
    for name, path in L.daemon_pids().items():
        pid = read_pid(path)
        rows.append((name, pid, pid is not None and alive(pid)))
    for name, pid, ok in rows:
        print(f"  {name:16} {'running' if ok else 'DOWN':8} pid {pid}")
    healthy = all(ok for _, _, ok in rows)
    profile = current_profile()
    print(f"  {'profile':16} {profile:8} {PROFILES.get(profile, '?')} on the cluster hosts")
    if healthy:
        off, url = index_is_off(), f"http://login:{PYPI_PORT}/simple/"
        print(f"  {'package index':16} {'OFF' if off else 'on':8} {url}", end="")
        print("  (refuses connections: cluster.py index on)" if off else "")
        print(in_host(LOGIN, ["sinfo"], check=False).rstrip())
        print(in_host(LOGIN, ["squeue"], check=False).rstrip())
    print(f"sandbox: {'up' if healthy else 'DEGRADED (make sandbox-down && make sandbox-up)'}")
    return 0 if healthy else 1


def hide_python(on: bool) -> None:
    """Hide /usr/bin/python3* on login, as on a login node whose system Python is too old.

    Login's /usr/bin is overmounted with a copy made of hard links that leaves python3* out,
    so no shell, `command -v` or Ansible interpreter discovery can find them there.
    """
    shadow = L.etc / "usr-bin-without-python"
    mounted = in_host(LOGIN, ["findmnt", "-n", "/usr/bin"], check=False).strip() != ""
    if on and not mounted:
        shutil.rmtree(shadow, ignore_errors=True)
        shadow.mkdir()
        for entry in os.scandir("/usr/bin"):
            if entry.name.startswith("python3"):
                continue
            if entry.is_symlink():
                (shadow / entry.name).symlink_to(os.readlink(entry.path))
            elif entry.is_file():
                os.link(entry.path, shadow / entry.name)
        in_host(LOGIN, ["mount", "--bind", str(shadow), "/usr/bin"])
    elif not on and mounted:
        in_host(LOGIN, ["umount", "--lazy", "/usr/bin"])
        shutil.rmtree(shadow, ignore_errors=True)
    print(f"sandbox: system python3 on login {'hidden' if on else 'visible'}")


def daemon(name: str, action: str) -> None:
    """Stop, start or restart one daemon (fault injection for tests: slurmctld, an sshd ...)."""
    if name not in daemons():
        raise SandboxError(f"unknown daemon {name!r}; choose one of {', '.join(daemons())}")
    pid_file = L.daemon_pids()[name]
    if action in ("stop", "restart"):
        pid = read_pid(pid_file)
        if pid is not None and alive(pid):
            terminate([pid], grace=10)
        pid_file.unlink(missing_ok=True)
    if action in ("start", "restart"):
        pid = read_pid(pid_file)
        if pid is None or not alive(pid):
            start_daemon(name, wait=True)
    print(f"sandbox: {name} {action} done")


def index_is_off() -> bool:
    return answers(LOGIN, ["nft", "list", "table", "inet", "sandbox_index"])


def index(on: bool) -> None:
    """Login's package index answers again (on) or refuses connections (off), as a site's
    proxy or mirror that is down; the server itself keeps running."""
    rules = render("index-on.nft") if on else render("index-off.nft", port=PYPI_PORT)
    in_host(LOGIN, ["nft", "-f", "-"], input=rules)
    print(f"sandbox: package index http://login:{PYPI_PORT}/ {'on' if on else 'off'}")


def link(state: str) -> None:
    """Cut or restore the laptop's network (its only link, to login), as a dropped Wi-Fi would."""
    in_host(LAPTOP, ["ip", "link", "set", "eth0", state])
    print(f"sandbox: laptop link {state}")


def exec_in(host_name: str, user: str | None, login: bool, command: list[str]) -> int:
    host = host_named(host_name)
    if not command:
        command = ["bash", "-l"] if user else ["bash"]
    if user and login:
        command = ["runuser", "-l", user, "-c", shlex.join(command)]
    elif user:
        command = ["runuser", "-u", user, "--", *command]
    argv = ns_argv(host, command)
    os.execvp(argv[0], argv)
    return 127  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sandbox/cluster.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    upp = sub.add_parser("up", help="start the sandbox cluster (idempotent)")
    upp.add_argument(
        "--profile", choices=list(PROFILES), default="lmod",
        help="the cluster hosts' module system: lmod (default) or modules (Environment Modules)",
    )  # fmt: skip
    sub.add_parser("down", help="stop it and remove everything it made")
    sub.add_parser("status", help="show hosts, daemons, sinfo and squeue")
    sub.add_parser("clean-cache", help="remove the downloaded wheelhouse")
    hide = sub.add_parser("hide-python", help="hide /usr/bin/python3* on the login node")
    hide.add_argument("state", choices=["on", "off"])
    dmn = sub.add_parser("daemon", help="stop/start/restart a daemon (fault injection)")
    dmn.add_argument(
        "name", help="slurmctld, slurmdbd, mariadbd, slurmd-cn01, sshd-login, pypi, ..."
    )
    dmn.add_argument("action", choices=["stop", "start", "restart"])
    idx = sub.add_parser("index", help="the package index on login refuses (off) or answers (on)")
    idx.add_argument("state", choices=["off", "on"])
    lnk = sub.add_parser("link", help="cut (down) or restore (up) the laptop's network")
    lnk.add_argument("state", choices=["down", "up"])
    ex = sub.add_parser("exec", help="run a command inside a host")
    ex.add_argument("host", choices=[h.name for h in HOSTS])
    ex.add_argument("--user", help="run as this user (default root)")
    ex.add_argument("--login", action="store_true", help="with --user: in a login shell")
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.profile)
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command == "clean-cache":
            shutil.rmtree(CACHE, ignore_errors=True)
        elif args.command == "hide-python":
            hide_python(args.state == "on")
        elif args.command == "daemon":
            daemon(args.name, args.action)
        elif args.command == "index":
            index(args.state == "on")
        elif args.command == "link":
            link(args.state)
        elif args.command == "exec":
            return exec_in(args.host, args.user, args.login, command)
    except SandboxError as err:
        print(f"sandbox: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
