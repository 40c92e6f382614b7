# shellcheck shell=bash
# nodebook-remote, the commands that run on the compute node: the batch job itself (job), what a
# killed job left in its node-local runtime dir (tidy), a tunnel's remote end (hold) and a
# kernelspec's launcher (kernel).
nb_part_node() { :; }

KILL_GRACE=0.1 # s Jupyter gets after SIGTERM before SIGKILL when the job ends

# --------------------------------------------------------------------------------- the job

job_log() { printf '%(%F %T)T nodebook: %s\n' -1 "$*" >&2; }
job_die() {
  job_log "error: $*"
  exit 1
}

JUPYTER_PID=""
SLEEP_PID=""

# stop_jupyter: SIGTERM, then SIGKILL after KILL_GRACE s, without polling where bash can wait.
stop_jupyter() {
  local dog i
  [ -n "$JUPYTER_PID" ] && kill -0 "$JUPYTER_PID" 2>/dev/null || return 0
  kill -TERM "$JUPYTER_PID" 2>/dev/null
  if [ "${BASH_VERSINFO[0]}" -gt 5 ] || { [ "${BASH_VERSINFO[0]}" -eq 5 ] && [ "${BASH_VERSINFO[1]}" -ge 1 ]; }; then
    # Jupyter's end or the grace's, whichever comes first (bash 5.1: wait -n on given pids).
    sleep "$KILL_GRACE" &
    dog=$!
    wait -n "$JUPYTER_PID" "$dog" 2>/dev/null
    kill -KILL "$JUPYTER_PID" "$dog" 2>/dev/null
  elif [ "${BASH_VERSINFO[0]}" -eq 5 ] || { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -ge 3 ]; }; then
    sleep "$KILL_GRACE" &
    dog=$!
    wait -n 2>/dev/null
    kill -KILL "$JUPYTER_PID" "$dog" 2>/dev/null
  else
    for i in 1 2 3 4 5 6; do
      kill -0 "$JUPYTER_PID" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$JUPYTER_PID" 2>/dev/null
    wait "$JUPYTER_PID" 2>/dev/null
  fi
}

job_cleanup() {
  trap - EXIT TERM INT HUP
  # Secrets and the session's handles go first: Slurm SIGKILLs the job KillWait s after scancel.
  # (Nothing is waited for before: reaping the poll's killed sleep took 0.3 s under Slurm.)
  [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
  rm -f "$J_CONN" "$J_CONN.tmp" "$J_HB" "$J_TOKEN" "$J_SOCK" "$J_SEEN" "$J_USE"
  rmdir "$J_DIR" 2>/dev/null
  stop_jupyter
  rm -rf "$J_RUN"
  job_log "job $J_ID ended"
}

cmd_job() {
  local id endpoint hb node started sock="" addr="" port="" args status
  load_setup
  id=${SLURM_JOB_ID:-${NODEBOOK_JOB_ID:-}}
  [ -n "$id" ] || job_die "neither SLURM_JOB_ID nor NODEBOOK_JOB_ID is set"
  case $id in *[!A-Za-z0-9_.-]*) job_die "bad job id: $id" ;; esac
  job_paths "$id"
  endpoint=${NODEBOOK_ENDPOINT:-${S_endpoint:-socket}}
  case $endpoint in socket | tcp | tcp-node) ;; *) job_die "NODEBOOK_ENDPOINT must be socket, tcp or tcp-node, not $endpoint" ;; esac
  hb=${NODEBOOK_HEARTBEAT_TIMEOUT:-${S_heartbeat_timeout:-0}}
  case $hb in '' | *[!0-9]*) job_die "NODEBOOK_HEARTBEAT_TIMEOUT must be whole seconds" ;; esac
  node=${SLURMD_NODENAME:-$(hostname -s)}
  now
  started=$NOW
  umask 077
  [ -f "$J_LOG" ] && chmod 0600 "$J_LOG"
  trap job_cleanup EXIT
  trap 'job_log "signal received, stopping"; exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
  # Jupyter's runtime files go to a per-job, node-local directory: never to the shared home
  # (`jupyter server list` on a login node would delete them) nor to XDG_RUNTIME_DIR.
  unset XDG_RUNTIME_DIR JUPYTER_TOKEN JUPYTER_PORT
  [ -d "$S_jobs_dir" ] || mkdir -m 0700 "$S_jobs_dir" || job_die "cannot create $S_jobs_dir"
  mkdir -m 0700 "$J_DIR" 2>/dev/null || [ -d "$J_DIR" ] || job_die "cannot create $J_DIR"
  chmod 0700 "$J_DIR"
  mkdir -m 0700 "$J_RUN" || job_die "$J_RUN already exists or cannot be created"
  export JUPYTER_RUNTIME_DIR=$J_RUN/runtime
  export JUPYTER_CONFIG_DIR=$S_config_dir
  # nodebook's Jupyter data dir (the kernelspecs of nodebook_kernels) first on JUPYTER_PATH; the
  # user's own data dir (~/.local/share/jupyter) stays where Jupyter looks for it.
  [ -n "${S_data_dir:-}" ] && export JUPYTER_PATH=$S_data_dir${JUPYTER_PATH:+:$JUPYTER_PATH}
  export PATH=$S_bin_dir:$PATH
  # The token is made and written by Python (0600), never passed in argv.
  export JUPYTER_TOKEN_FILE=$J_TOKEN
  "$S_python" - "$J_TOKEN" <<'EOF' || job_die "cannot write the token file"
import os, secrets, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, secrets.token_hex(32).encode())
os.close(fd)
EOF
  if [ "$endpoint" = socket ]; then
    sock=$J_SOCK
    args=(--sock="$sock" --ServerApp.sock_mode=0600)
  else
    addr=127.0.0.1
    if [ "$endpoint" = tcp-node ]; then
      # The node's cluster address: what its name resolves to (never 0.0.0.0, never loopback).
      addr=$("$S_python" -c 'import socket, sys; print(socket.gethostbyname(sys.argv[1]))' "$node") ||
        job_die "cannot resolve $node to its cluster address"
      case $addr in 127.* | 0.* | '') job_die "$node resolves to $addr, not a cluster address" ;; esac
    fi
    port=$("$S_python" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$addr") ||
      job_die "cannot pick a free port on $addr"
    args=(--ServerApp.ip="$addr" --ServerApp.port="$port" --ServerApp.port_retries=0)
    # Reachable from the cluster network (login forwards to it): only the token or the password
    # protects it, and both are always on (the token comes from JUPYTER_TOKEN_FILE).
    [ "$endpoint" = tcp-node ] && args+=(--ServerApp.allow_remote_access=True)
  fi
  job_log "job $id on $node: starting jupyter $S_app ($endpoint)"
  # Through nodebook-jupyter (next to this helper): Jupyter's own script, minus a start-up probe.
  "$S_python" "$NB_BASE/bin/nodebook-jupyter" "$S_bin_dir/jupyter-$S_app" "${args[@]}" --no-browser &
  JUPYTER_PID=$!
  # Wait until Jupyter answers on its endpoint, then write connection.json atomically (0600),
  # the token last (the helper's `connection` strips it by that).
  "$S_python" - "$JUPYTER_PID" "${S_start_timeout:-120}" "$J_CONN" "$id" "$node" "$endpoint" \
    "$sock" "$addr" "$port" "$S_app" "$started" "$hb" "$START_POLL" <<'EOF'
import http.client, json, os, socket, sys, time

pid, timeout, conn_path, job_id, node, endpoint, sock, addr, port, app, started, hb, poll = \
    sys.argv[1:]
pid, deadline = int(pid), time.monotonic() + int(timeout)


class UnixHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sock)


def answers():
    c = UnixHTTPConnection("localhost", timeout=2) if endpoint == "socket" else \
        http.client.HTTPConnection(addr, int(port), timeout=2)
    try:
        c.request("GET", "/api")
        return c.getresponse().status == 200
    except OSError:
        return False
    finally:
        c.close()


while not answers():
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("jupyter exited before it answered")
    if time.monotonic() > deadline:
        print("timeout", file=sys.stderr)
        sys.exit(2)
    time.sleep(float(poll))

with open(os.environ["JUPYTER_TOKEN_FILE"], encoding="ascii") as f:
    token = f.read().strip()
info = {"job_id": job_id, "node": node, "endpoint": endpoint,
        "socket": sock or None, "host": addr or None, "port": int(port) if port else None,
        "pid": pid, "base_url": "/", "app": app, "started": int(started),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES") or None, "heartbeat_timeout": int(hb),
        "token": token}
try:
    fd = os.open(conn_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(info) + "\n")
    os.replace(conn_path + ".tmp", conn_path)
except OSError as exc:
    print(f"cannot write the connection file {conn_path}: {exc}", file=sys.stderr)
    sys.exit(3)
EOF
  status=$?
  case $status in
    0) ;;
    2) job_die "jupyter did not answer within ${S_start_timeout:-120} s" ;;
    3) job_die "jupyter answers, but $J_CONN could not be written: free space (or quota) under $S_jobs_dir" ;;
    *) job_die "jupyter exited before it answered (its errors are above)" ;;
  esac
  job_log "jupyter answers (pid $JUPYTER_PID); connection file written"
  # Dead-man's switch: the session keeps the heartbeat file fresh; before its first touch the
  # window counts from the job's start. Jupyter ending (UI shutdown, idle culling) ends the job at
  # once: the wait returns when Jupyter or the poll's sleep ends, whichever comes first.
  local last status=""
  while kill -0 "$JUPYTER_PID" 2>/dev/null; do
    if [ "$hb" -gt 0 ]; then
      now
      last=$(stat -c %Y "$J_HB" 2>/dev/null) || last=$started
      if [ $((NOW - last)) -gt "$hb" ]; then
        job_log "no heartbeat for $((NOW - last)) s (timeout $hb s): stopping jupyter"
        exit "$DEADMAN_EXIT"
      fi
    fi
    sleep "${S_poll_interval:-5}" &
    SLEEP_PID=$!
    if wait_any; then status=0; else status=$?; fi
    if kill -0 "$SLEEP_PID" 2>/dev/null; then
      kill "$SLEEP_PID" 2>/dev/null # Jupyter ended first: `status` is its exit status
      wait "$SLEEP_PID" 2>/dev/null
    else
      status=""
    fi
    SLEEP_PID=""
  done
  if [ -z "$status" ]; then
    wait "$JUPYTER_PID" 2>/dev/null
    status=$?
  fi
  JUPYTER_PID=""
  job_log "jupyter exited with status $status"
  exit "$status"
}

# wait_any: until one of this shell's children (Jupyter, the poll's sleep) ends; its status.
# `wait -n` came with bash 4.3; older bash waits for the sleep alone (Jupyter's end is then seen
# at the next poll).
wait_any() {
  if [ "${BASH_VERSINFO[0]}" -gt 4 ] || { [ "${BASH_VERSINFO[0]}" -eq 4 ] && [ "${BASH_VERSINFO[1]}" -ge 3 ]; }; then
    wait -n 2>/dev/null
  else
    wait "$SLEEP_PID" 2>/dev/null
  fi
}

# tidy: on a node, remove what a job killed outright left in its node-local runtime dir (the
# token, the socket). Only for a job that has ended (the session calls it after `ended`).
cmd_tidy() {
  [ "$#" -eq 1 ] || usage "tidy JOB"
  load_setup
  job_paths "$1"
  if [ -d "$J_RUN" ]; then
    rm -rf "$J_RUN"
    emit tidied job_id "$1" "#removed" true
  else
    emit tidied job_id "$1" "#removed" false
  fi
}

# hold: the remote end of a tunnel's ssh session; it ends when the driver closes its stdin. The
# variable tags the process with its job, so it can be told apart from other sessions'.
cmd_hold() {
  [ "$#" -eq 1 ] || usage "hold JOB"
  export NODEBOOK_TUNNEL=$1
  exec cat >/dev/null
}

# --------------------------------------------------------------------------------- kernels

# path_without DIR: PATH without DIR, in REPLY.
path_without() {
  local joined="" piece pieces=()
  IFS=: read -ra pieces <<<"$PATH"
  for piece in "${pieces[@]+"${pieces[@]}"}"; do
    [ "$piece" = "$1" ] || joined+="${joined:+:}$piece"
  done
  REPLY=$joined
}

# activate_like_conda PREFIX PYTHON: what `conda activate PREFIX` does, where there is no conda:
# the env's bin first on PATH (in place of an active env's), CONDA_PREFIX, CONDA_DEFAULT_ENV,
# CONDA_SHLVL, CONDA_PROMPT_MODIFIER, the env's `conda env config vars` (conda-meta/state), then
# its etc/conda/activate.d/*.sh, sourced in order.
activate_like_conda() {
  local prefix=$1 py=$2 name kv hook
  case $prefix in */envs/*) name=${prefix##*/} ;; *) name=$prefix ;; esac
  if [ "${CONDA_PREFIX:-}" != "$prefix" ]; then
    if [ -n "${CONDA_PREFIX:-}" ]; then
      path_without "$CONDA_PREFIX/bin"
      PATH=$REPLY
      export "CONDA_PREFIX_${CONDA_SHLVL:-1}=$CONDA_PREFIX"
    fi
    export CONDA_SHLVL=$((${CONDA_SHLVL:-0} + 1))
  fi
  export PATH=$prefix/bin:$PATH CONDA_PREFIX=$prefix CONDA_DEFAULT_ENV=$name \
    CONDA_PROMPT_MODIFIER="($name) "
  if [ -r "$prefix/conda-meta/state" ]; then
    while IFS= read -r -d '' kv; do
      case ${kv%%=*} in '' | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
      export "${kv?}"
    done < <("$py" -c 'import json, sys
env = json.load(open(sys.argv[1])).get("env_vars") or {}
sys.stdout.write("".join(f"{k}={v}\0" for k, v in env.items()))' "$prefix/conda-meta/state" 2>/dev/null)
  fi
  for hook in "$prefix"/etc/conda/activate.d/*.sh; do
    # shellcheck disable=SC1090 # the environment's own activation scripts
    [ -f "$hook" ] && . "$hook"
  done
  return 0
}

# kernel: the launcher of a kernelspec of nodebook_kernels (argv of kernels/<name>/kernel.json),
# run by Jupyter inside the job on the compute node: load the modules, activate the environment
# (conda's own `conda activate` where a conda command exists once the modules are loaded; else
# as conda or a venv's activate would), then exec its Python's ipykernel with the arguments
# after `--` (-f CONNECTION_FILE).
cmd_kernel() {
  local name="" kind=plain prefix="" py="" modules=() m how code
  while [ "$#" -gt 0 ]; do
    case $1 in
      --name) name=$2; shift 2 ;;
      --kind) kind=$2; shift 2 ;;
      --prefix) prefix=${2%/}; shift 2 ;;
      --python) py=$2; shift 2 ;;
      --module) modules+=("$2"); shift 2 ;;
      --) shift; break ;;
      *) usage "kernel: unknown option $1" ;;
    esac
  done
  case $kind in conda | venv | plain) ;; *) usage "kernel: --kind conda|venv|plain" ;; esac
  case $prefix in /*) ;; *) usage "kernel: --prefix takes the environment's absolute path" ;; esac
  [ -n "$py" ] || py=$prefix/bin/python
  [ "$#" -gt 0 ] || usage "kernel: give ipykernel's arguments after -- (-f CONNECTION_FILE)"
  name=${name:-${prefix##*/}}
  # Module functions and activation scripts are not written for `set -u`.
  set +u
  if [ "${#modules[@]}" -gt 0 ]; then
    if ! type module >/dev/null 2>&1; then
      # `module` is a login-shell function; the login init resets PATH: keep the job's.
      local saved_path=$PATH
      # shellcheck source=/dev/null # the system's login init
      . /etc/profile >/dev/null 2>&1
      PATH=$saved_path
    fi
    type module >/dev/null 2>&1 ||
      die no-module-command "$E_SETUP" "kernel $name: \`module\` is not available on $(hostname -s) to load ${modules[*]}: remove the modules from this environment's entry in nodebook_kernels_environments and re-run \`nodebook setup\`"
    for m in "${modules[@]}"; do
      module load "$m" >&2 ||
        die missing-module "$E_SETUP" "kernel $name: module load $m failed on $(hostname -s): fix the modules of this environment in nodebook_kernels_environments (\`module avail\` lists them) and re-run \`nodebook setup\`" module "$m"
    done
  fi
  case $kind in
    conda)
      how="as conda does"
      if command -v conda >/dev/null 2>&1; then
        if code=$(conda shell.bash hook 2>/dev/null) && eval "$code" && conda activate "$prefix" >&2; then
          how="conda activate"
        else
          job_log "kernel $name: conda activate $prefix failed; activating it as conda does"
          activate_like_conda "$prefix" "$py"
        fi
      else
        activate_like_conda "$prefix" "$py"
      fi
      ;;
    venv)
      how="venv"
      unset PYTHONHOME
      export VIRTUAL_ENV=$prefix PATH=$prefix/bin:$PATH VIRTUAL_ENV_PROMPT="(${prefix##*/}) "
      ;;
    plain)
      how="its bin first on PATH"
      export PATH=$prefix/bin:$PATH
      ;;
  esac
  [ -x "$py" ] ||
    die no-python "$E_SETUP" "kernel $name: no Python at $py on $(hostname -s): fix the prefix (or python) of this environment in nodebook_kernels_environments and re-run \`nodebook setup\`"
  job_log "kernel $name on $(hostname -s): ${modules[*]:+modules ${modules[*]}, }$kind $prefix ($how), $py -m ipykernel_launcher"
  exec "$py" -m ipykernel_launcher "$@"
}
