# shellcheck shell=bash
# nodebook-remote, the commands that run on the login node: a session's steps (submit, wait,
# connection, heartbeat, ended, cancel, list), a job's paths, the probe of a node's sshd, the
# login node's half of `--tunnel hops` (hop) and the kernels the job's Jupyter offers.
nb_part_login() { :; }

emit_status() {
  local waiting=false id=$1
  shift
  is_waiting "$Q_STATE" && waiting=true
  if [ "$Q_STATE" = RUNNING ] && [ -n "$Q_NODE" ] && sched_queue; then
    node_host_keys "$Q_NODE"
    set -- "$@" "#host_keys" "$REPLY"
  fi
  emit status job_id "$id" state "$Q_STATE" reason "$Q_REASON" node "$Q_NODE" start "$Q_START" \
    "#waiting" "$waiting" "$@"
}

# node_host_keys NODE: the login node's own records of NODE's host key, as a JSON array of
# known_hosts lines (hashed, @cert-authority and @revoked lines as they are), in REPLY. The files
# and the names are the ones this host's ssh would check for NODE (`ssh -G`: its
# GlobalKnownHostsFile and UserKnownHostsFile, its HostName and HostKeyAlias), so the laptop can
# trust a node's key on the login node's word (the session's tunnel to the node) without asking.
# One `ssh -G` and one `ssh-keygen -F` per file and name, run once, when the job starts.
node_host_keys() {
  local key value names=("$1") files=() lines=() name file line seen=" "
  while read -r key value; do
    case $key in
      hostname | hostkeyalias) names+=("$value") ;;
      globalknownhostsfile | userknownhostsfile) read -ra files <<<"${files[*]-} $value" ;;
    esac
  done < <(ssh -G "$1" 2>/dev/null)
  [ "${#files[@]}" -gt 0 ] || files=(/etc/ssh/ssh_known_hosts "$HOME/.ssh/known_hosts")
  for name in "${names[@]}"; do
    case $seen in *" $name "*) continue ;; esac
    seen+="$name "
    for file in "${files[@]}"; do
      [ -r "$file" ] || continue
      while IFS= read -r line; do
        case $line in '#'* | '') continue ;; esac
        case " ${lines[*]-} " in *" $line "*) continue ;; esac
        lines+=("$line")
      done < <(ssh-keygen -F "$name" -f "$file" 2>/dev/null)
    done
  done
  json_list "${lines[@]+"${lines[@]}"}"
}

cmd_paths() {
  [ "$#" -eq 1 ] || usage "paths JOB"
  load_setup
  job_paths "$1"
  emit paths job_id "$J_ID" jobs_dir "$S_jobs_dir" job_dir "$J_DIR" connection "$J_CONN" \
    heartbeat "$J_HB" log "$J_LOG" pid_file "$J_PID" seen "$J_SEEN" runtime_dir "$J_RUN" \
    socket "$J_SOCK" hop_socket "$J_HOP"
}

# The sessions of this user (jobs named like setup's job name, or live standalone servers).
find_sessions() {
  local p id pid
  SESSIONS=()
  if sched_queue; then
    sched_sessions
  else
    for p in "$S_jobs_dir"/*.pid; do
      [ -r "$p" ] || continue
      read -r pid <"$p" || continue
      kill -0 "$pid" 2>/dev/null || continue
      id=${p##*/}
      SESSIONS+=("${id%.pid}|RUNNING|$(hostname -s)|||||")
    done
  fi
}

# gpus_of TRES: the GPUs in a TRES list ("cpu=1,...,gres/gpu=2" or "gres/gpu:a100=2"), in REPLY.
gpus_of() {
  local item
  REPLY=""
  IFS=',' read -ra items <<<"$1"
  for item in "${items[@]+"${items[@]}"}"; do
    case $item in gres/gpu=* | gres/gpu:*=*) REPLY=${item#*=} ;; esac
  done
}

# emit_session LINE [KIND]: one of SESSIONS as a JSON line (a "session", or KIND), with its use
# when sched_use looked at it.
emit_session() {
  local id state node used limit reason tres comment
  IFS='|' read -r id state node used limit reason tres comment <<<"$1"
  case $reason in None | '(null)') reason="" ;; esac
  gpus_of "$tres"
  use_args "$id"
  emit "${2:-session}" job_id "$id" state "$state" node "$node" elapsed "$used" \
    time_limit "$limit" reason "$reason" gpus "$REPLY" tres "$tres" \
    "${USE_ARGS[@]+"${USE_ARGS[@]}"}"
}

# use_args ID: a session's use as emit's arguments, in USE_ARGS: sstat's words (USE, from
# sched_use) and the helper's previous look at the job (CPU time then, seconds since), kept in
# J_USE and replaced once it is a minute old, so that CPU use can be measured over a window
# (sstat counts whole CPU seconds). Nothing for a job sstat did not answer for.
use_args() {
  local cpu="" rss="" peak="" util="" gmem="" prev="" at="" age=""
  USE_ARGS=()
  [ -n "${USE[$1]+x}" ] || return 0
  IFS='|' read -r cpu rss peak util gmem <<<"${USE[$1]}"
  USE_ARGS=(cpu "$cpu" rss "$rss" peak_rss "$peak" gpu_util "$util" gpu_mem "$gmem")
  [ -n "$cpu" ] || return 0
  job_paths "$1"
  now
  [ -r "$J_USE" ] && read -r at prev <"$J_USE"
  if [ -n "$at" ] && [ -n "$prev" ]; then
    age=$((NOW - at))
    USE_ARGS+=(cpu_then "$prev" then_age "$age")
  fi
  if [ -z "$age" ] || [ "$age" -ge 60 ] || [ "$age" -lt 0 ]; then
    printf '%s %s\n' "$NOW" "$cpu" >"$J_USE.tmp" 2>/dev/null && mv -f "$J_USE.tmp" "$J_USE" 2>/dev/null
  fi
  return 0
}

# usage JOB: one session's time, allocation and use (the live line's), in list's words.
cmd_usage() {
  local id="" v
  while [ "$#" -gt 0 ]; do
    case $1 in
      --scheduler) SCHEDULER=$2; shift 2 ;;
      -*) usage "usage: unknown option $1" ;;
      *) id=$1; shift ;;
    esac
  done
  [ -n "$id" ] || usage "usage JOB"
  load_setup
  job_paths "$id"
  find_sessions
  for v in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do
    [ "${v%%|*}" = "$id" ] || continue
    sched_queue && sched_use "$id"
    emit_session "$v" usage
    return 0
  done
  die not-found "$E_NOTFOUND" "no session $id of $ME on $(hostname -s) (see \`nodebook list\`)" job_id "$id"
}

cmd_submit() {
  local allow=false endpoint="" heartbeat="" tag=manual id v
  while [ "$#" -gt 0 ]; do
    case $1 in
      --scheduler) SCHEDULER=$2; shift 2 ;;
      --allow-second) allow=true; shift ;;
      --endpoint) endpoint=$2; shift 2 ;;
      --heartbeat) heartbeat=$2; shift 2 ;;
      --tag) tag=$2; shift 2 ;;
      --) shift; break ;;
      *) usage "submit: unknown option $1" ;;
    esac
  done
  case $tag in '' | *[!A-Za-z0-9_-]*) usage "submit: bad --tag" ;; esac
  case $endpoint in '' | socket | tcp | tcp-node) ;; *) usage "submit: --endpoint socket|tcp|tcp-node" ;; esac
  case $heartbeat in *[!0-9]*) usage "submit: --heartbeat takes seconds" ;; esac
  load_setup
  [ -n "$heartbeat" ] || heartbeat=${S_heartbeat_timeout:-0}
  find_sessions
  for v in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do emit_session "$v"; done
  if [ "${#SESSIONS[@]}" -gt 0 ] && [ "$allow" != true ]; then
    id=${SESSIONS[0]%%|*}
    die duplicate "$E_DUP" "a session is already running on $(hostname -s): job $id. Reconnect with \`nodebook attach $id\`, or pass --allow-second" job_id "$id"
  fi
  # A second session may land on the first one's node. pam_slurm_adopt puts a tunnel's ssh into
  # one of the user's jobs there (which one, without cgroups, is not even the newest), and each
  # job has a private /tmp (job_container/tmpfs): another job's socket is out of its sight.
  # Unless one was asked for, a session that may share a node (another one runs, or
  # --allow-second: sessions submitted at once do not see each other) listens on the node's
  # loopback (token-protected), which every job there shares.
  if { [ "${#SESSIONS[@]}" -gt 0 ] || [ "$allow" = true ]; } && [ -z "$endpoint" ] &&
    [ "${S_endpoint:-socket}" = socket ] && sched_private_tmp; then
    endpoint=tcp
  fi
  now
  if sched_queue; then
    sched_submit "$tag" "$endpoint" "$heartbeat" "$@"
    id=$REPLY
  else
    umask 077
    id="s$NOW$$"
    mkdir -p "$S_jobs_dir" || die error "$E_ERROR" "cannot create $S_jobs_dir: check free space and permissions"
    NODEBOOK_JOB_ID="$id" NODEBOOK_ENDPOINT=$endpoint NODEBOOK_HEARTBEAT_TIMEOUT=$heartbeat \
      setsid "$S_job_script" >"$S_jobs_dir/$id.log" 2>&1 </dev/null &
    echo $! >"$S_jobs_dir/$id.pid"
  fi
  job_paths "$id"
  emit submitted job_id "$id" "#submitted_at" "$NOW" "#heartbeat_timeout" "$heartbeat" \
    scheduler "$SCHEDULER" endpoint "${endpoint:-${S_endpoint:-socket}}" runtime_dir "$J_RUN" \
    socket "$J_SOCK" log "$J_LOG"
  # The first state, in the same round trip (PENDING and why, or already RUNNING).
  query "$id" || Q_STATE=PENDING
  sched_queue || Q_STATE=RUNNING Q_NODE=$(hostname -s)
  emit_status "$id"
  sched_queue && printf '%s|%s|%s\n' "$NOW" "$NOW" "$Q_STATE|$Q_REASON|$Q_NODE|$Q_START" >"$J_SEEN"
  return 0
}

# job_started: the job has started on its node (its log or its job dir exists: the first sign
# on the shared file system, before the scheduler says RUNNING); needs job_paths.
job_started() {
  [ -e "$J_LOG" ] || [ -e "$J_DIR" ]
}

# wait: report the job's state as soon as it differs from the last one reported (kept in the
# job's .seen file: submitted|last query|state|reason|node|start), else block until it changes or
# the window ends. At most one squeue per SCHED_POLL s, across calls too; the job's log appearing
# (its start) is noticed on the shared file system within FS_POLL s and queried at once.
cmd_wait() {
  local id="" window=30 limit=0 begin seen="" submitted="" last="" next=0 fp prev="" logseen=0
  while [ "$#" -gt 0 ]; do
    case $1 in
      --window) window=$2; shift 2 ;;
      --pending-limit) limit=$2; shift 2 ;;
      --scheduler) SCHEDULER=$2; shift 2 ;;
      -*) usage "wait: unknown option $1" ;;
      *) id=$1; shift ;;
    esac
  done
  load_setup
  job_paths "$id"
  [ "$limit" -gt 0 ] 2>/dev/null || limit=${S_pending_limit:-0}
  now
  begin=$NOW
  if [ -r "$J_SEEN" ] && IFS= read -r seen <"$J_SEEN"; then
    submitted=${seen%%|*}
    seen=${seen#*|}
    last=${seen%%|*}
    prev=${seen#*|}
  fi
  case $submitted in '' | *[!0-9]*) submitted=$NOW ;; esac
  case $last in '' | *[!0-9]*) prev="" ;; *) next=$((last + SCHED_POLL)) ;; esac
  # Until the next query, the last state reported is the state.
  Q_STATE=UNKNOWN Q_REASON="" Q_NODE="" Q_START=""
  [ -n "$prev" ] && IFS='|' read -r Q_STATE Q_REASON Q_NODE Q_START <<<"$prev"
  while :; do
    if [ "$logseen" = 0 ] && job_started; then
      logseen=1
      next=0
    fi
    now
    if [ "$NOW" -ge "$next" ]; then
      query "$id" || Q_STATE=UNKNOWN
      fp="$Q_STATE|$Q_REASON|$Q_NODE|$Q_START"
      printf '%s|%s|%s\n' "$submitted" "$NOW" "$fp" >"$J_SEEN" 2>/dev/null
      if ! is_waiting "$Q_STATE" || { [ "$fp" != "$prev" ] && [ "$Q_STATE" != UNKNOWN ]; }; then
        break
      fi
      next=$((NOW + SCHED_POLL))
    fi
    if [ "$limit" -gt 0 ] && [ $((NOW - submitted)) -ge "$limit" ] && is_waiting "$Q_STATE"; then
      emit_status "$id"
      die pending-limit "$E_SCHED" "job $id still $Q_STATE${Q_REASON:+ ($Q_REASON)} after $limit s; giving up: raise --pending-limit, or ask for less (--partition, --time, --cpus, --mem, --gpus)" job_id "$id"
    fi
    [ $((NOW - begin)) -ge "$window" ] && break
    nap "$FS_POLL"
  done
  if [ "$Q_STATE" = RUNNING ] || is_waiting "$Q_STATE"; then
    emit_status "$id"
    return 0
  fi
  # It ended before it ran.
  rm -f "$J_SEEN"
  final_state "$id"
  tail_lines "$J_LOG" 5
  emit_status "$id" final_state "$F_STATE" "#log" "$REPLY"
  die job-ended "$E_ENDED" "job $id ended before it ran (${F_STATE:-$Q_STATE}); last lines of the job log: $(tail_text "$J_LOG" 5); fix what the log names (a module or a setting: re-run \`nodebook setup\`), then retry" job_id "$id"
}

tail_text() {
  local text
  text=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n "$2" | paste -sd '|' | sed 's/|/ | /g')
  printf '%s' "${text:-(empty)}"
}

# connection: wait for Jupyter's connection file, then print it (without the token unless
# --token: only the driver asks for it, over its own ssh connection, never through Ansible).
# With --queued the job may still wait in the queue: first wait for it to start (job_started,
# as `wait` notices it), with no scheduler query and no timeout (the session's `wait` watches
# the queue, and ends the session if the job ends there), then say its state (a status line:
# the node and its host keys, so the tunnel's login overlaps Jupyter's start), then as without.
# While it waits it writes an empty line every WRITE_EVERY naps: when the session has gone (its
# ssh closed) the write fails and ends it.
cmd_connection() {
  local id="" timeout="" token=false queued=false begin next line naps=0
  while [ "$#" -gt 0 ]; do
    case $1 in
      --timeout) timeout=$2; shift 2 ;;
      --token) token=true; shift ;;
      --queued) queued=true; shift ;;
      --scheduler) SCHEDULER=$2; shift 2 ;;
      -*) usage "connection: unknown option $1" ;;
      *) id=$1; shift ;;
    esac
  done
  load_setup
  job_paths "$id"
  [ -n "$timeout" ] || timeout=$((${S_start_timeout:-120} + 60))
  if [ "$queued" = true ]; then
    until job_started; do
      nap "$FS_POLL"
      naps=$((naps + 1))
      [ $((naps % WRITE_EVERY)) -eq 0 ] && { printf '\n' || exit 0; }
    done
    query "$id" && [ "$Q_STATE" = RUNNING ] && emit_status "$id"
  fi
  now
  begin=$NOW
  next=$((NOW + SCHED_POLL))
  while [ ! -e "$J_CONN" ]; do
    now
    if [ $((NOW - begin)) -ge "$timeout" ]; then
      Q_STATE=TIMEOUT
      break
    fi
    if [ "$NOW" -ge "$next" ]; then
      query "$id" || Q_STATE=RUNNING
      [ "$Q_STATE" = RUNNING ] || break
      next=$((NOW + SCHED_POLL))
    fi
    nap "$START_POLL"
  done
  if [ -r "$J_CONN" ] && IFS= read -r line <"$J_CONN" && [ -n "$line" ]; then
    if [ "$token" != true ]; then
      line=${line%%, \"token\": *}
      line+="}"
    fi
    json_str "$J_HOP"
    local hop=$REPLY node=${line#*\"node\": \"}
    node=${node%%\"*}
    REPLY="[]"
    sched_queue && [ -n "$node" ] && node_host_keys "$node"
    printf '{"nodebook": "connection", "hop_socket": %s, "host_keys": %s, %s\n' "$hop" "$REPLY" "${line#\{}"
    return 0
  fi
  if [ "$token" = true ] && [ "$timeout" = 0 ]; then
    die not-found "$E_NOTFOUND" "job $id has no running Jupyter on $(hostname -s) (see \`nodebook list\`)" job_id "$id"
  fi
  local why="the job left the queue ($Q_STATE)"
  [ "$Q_STATE" = TIMEOUT ] && why="no connection file after $timeout s"
  die job-ended "$E_ENDED" "Jupyter did not start: $why; last lines of the job log: $(tail_text "$J_LOG" 15); fix what the log names (a module or a setting: re-run \`nodebook setup\`), then retry" job_id "$id"
}

# heartbeat: touch the job's heartbeat; alive while Jupyter's connection file exists. With
# --check also the scheduler's state (one query: the session asks only when Jupyter stopped
# answering through the tunnel, to tell a dead job from a broken tunnel).
cmd_heartbeat() {
  local id="" check=false alive=false
  while [ "$#" -gt 0 ]; do
    case $1 in
      --check) check=true; shift ;;
      --scheduler) SCHEDULER=$2; shift 2 ;;
      -*) usage "heartbeat: unknown option $1" ;;
      *) id=$1; shift ;;
    esac
  done
  load_setup
  job_paths "$id"
  touch "$J_HB" 2>/dev/null
  [ -e "$J_CONN" ] && alive=true
  if [ "$check" = true ]; then
    query "$id" || Q_STATE=UNKNOWN
    emit heartbeat job_id "$id" "#alive" "$alive" state "$Q_STATE"
  else
    emit heartbeat job_id "$id" "#alive" "$alive"
  fi
}

# ended: how the job ended. The job's trap removes connection.json first, so it may still be
# RUNNING or COMPLETING when the session notices: wait (here, one round trip) for the end.
cmd_ended() {
  local id="" i settle=15
  while [ "$#" -gt 0 ]; do
    case $1 in
      --scheduler) SCHEDULER=$2; shift 2 ;;
      --settle) settle=$2; shift 2 ;;
      -*) usage "ended: unknown option $1" ;;
      *) id=$1; shift ;;
    esac
  done
  case $settle in '' | *[!0-9]*) usage "ended: --settle takes seconds" ;; esac
  load_setup
  job_paths "$id"
  if sched_queue; then
    for ((i = 1; i <= settle * 4; i++)); do
      query "$id" || break
      case $Q_STATE in RUNNING | COMPLETING | CONFIGURING) nap 0.25 ;; *) break ;; esac
    done
  fi
  final_state "$id"
  # A job killed outright (SIGKILL: memory, KillWait, a node failure) never ran its trap: its
  # connection file (with the token) and heartbeat are still here. Remove them; `stale` tells the
  # session to tidy the node's runtime dir too (the helper's `tidy`, on that node).
  local stale=false
  case $F_STATE in
    RUNNING | COMPLETING | CONFIGURING | PENDING) ;;
    *)
      if [ -e "$J_CONN" ] || [ -e "$J_HB" ]; then
        stale=true
        rm -f "$J_CONN" "$J_CONN.tmp" "$J_HB"
        rmdir "$J_DIR" 2>/dev/null
      fi
      rm -f "$J_SEEN" "$J_USE"
      ;;
  esac
  # Why, where the job's own log says more than Slurm: its dead-man's switch, Slurm's memory kill.
  local cause=""
  if [ "${F_EXIT%%:*}" = "$DEADMAN_EXIT" ] || grep -q "nodebook: no heartbeat for" "$J_LOG" 2>/dev/null; then
    cause=heartbeat
  elif [ "$F_STATE" = OUT_OF_MEMORY ] || grep -qi "exceeded .*memory limit" "$J_LOG" 2>/dev/null; then
    cause=memory
  fi
  tail_lines "$J_LOG" 5
  emit ended job_id "$id" state "$F_STATE" exit_code "$F_EXIT" reason "$F_REASON" by "$F_BY" cause "$cause" \
    source "$F_SOURCE" "#stale" "$stale" "#log" "$REPLY"
}

cmd_cancel() {
  local want="" tag="" all=false own=false confirm=30 ids=() left="" id name comment i pid line
  while [ "$#" -gt 0 ]; do
    case $1 in
      --scheduler) SCHEDULER=$2; shift 2 ;;
      --job) want=$2; shift 2 ;;
      --tag) tag=$2; shift 2 ;;
      --all) all=true; shift ;;
      --own) own=true; shift ;;
      --wait) confirm=$2; shift 2 ;;
      *) usage "cancel: unknown option $1" ;;
    esac
  done
  [ -n "$want$tag" ] || [ "$all" = true ] || usage "cancel: --job JOB, --tag TAG or --all"
  case $tag in *[!A-Za-z0-9_-]*) usage "cancel: bad --tag" ;; esac
  local begin
  now
  begin=$NOW # --wait counts from here: a Slurm that does not answer makes each command slow
  case $want in *[!0-9]*) ;; ?*)
    if sched_queue && [ "$own" = true ]; then
      # The session's own job, at once: one scancel, nothing read first (Ctrl-C must be quick),
      # then the confirmation below. scancel of a job that is gone says so on stderr (with
      # status 0 on Slurm 22.05), and so does one that failed (the controller did not answer):
      # the job is gone only when the queue says so; else scancel once more, and confirm.
      if sched_cancel_own "$want"; then
        ids=("$want")
      elif ! sched_gone "$want"; then
        sched_cancel "$want"
        ids=("$want")
      fi
    fi ;;
  esac
  load_setup
  [ -n "$want" ] && job_paths "$want"
  if sched_queue && [ "$own" = true ]; then
    : # scancel'd above (ids: the job, if it was still there)
  elif sched_queue; then
    sched_jobs
    for line in "${JOBS[@]+"${JOBS[@]}"}"; do
      IFS='|' read -r id name comment <<<"$line"
      if [ -z "$id" ] || [ "$name" != "$S_job_name" ]; then continue; fi
      if [ "$all" = true ] || [ "$id" = "$want" ] || { [ -n "$tag" ] && [ "$comment" = "nodebook:$tag" ]; }; then
        ids+=("$id")
      fi
    done
  fi
  if sched_queue; then
    if [ "${#ids[@]}" -gt 0 ]; then
      [ "$own" = true ] || sched_cancel "${ids[@]}"
      local list
      list=$(IFS=,; printf '%s' "${ids[*]}")
      # Quick looks first (a job without a slow trap leaves in a few tenths), then calmer ones.
      # The first one a tenth after the scancel, not at once: it would almost always still find
      # the job, and a query while the job is torn down delays its end (in the sandbox a
      # scancel followed by squeue at once, then every 0.1 s, left the queue a few hundredths
      # later than a scancel alone; with the first query a tenth or more later, about as soon).
      nap 0.1
      for ((i = 1; ; i++)); do
        if left=$(sched_queued "$list"); then
          [ -z "${left// /}" ] && { left=""; break; }
        else
          left="$list (squeue did not answer)"
        fi
        now
        [ $((NOW - begin)) -ge "$confirm" ] && break
        if [ "$i" -lt 20 ]; then nap 0.1; else nap 0.5; fi
      done
    fi
  else
    for p in "$S_jobs_dir"/*.pid; do
      [ -r "$p" ] || continue
      id=${p##*/}
      id=${id%.pid}
      if [ "$all" = true ] || [ "$id" = "$want" ]; then ids+=("$id"); fi
    done
    for id in "${ids[@]+"${ids[@]}"}"; do
      read -r pid <"$S_jobs_dir/$id.pid" || continue
      kill -TERM -- "-$pid" 2>/dev/null
      for ((i = 1; i <= 100; i++)); do
        kill -0 -- "-$pid" 2>/dev/null || break
        nap 0.1
      done
      kill -KILL -- "-$pid" 2>/dev/null
      rm -f "$S_jobs_dir/$id.pid"
    done
  fi
  for id in "${ids[@]+"${ids[@]}"}"; do
    case " $left " in *" $id "*) continue ;; esac # not seen leaving: the error below names it
    job_paths "$id"
    rm -f "$J_HOP" "$J_SEEN"
    emit stopped job_id "$id"
  done
  if [ -n "$want" ] && [ "${#ids[@]}" -eq 0 ]; then
    # Gone already (the session's own scancel came first): tidy what it left on this host.
    job_paths "$want"
    rm -f "$J_HOP" "$J_SEEN"
    emit gone job_id "$want"
  fi
  if [ -n "$left" ]; then
    die scheduler "$E_SCHED" "not seen leaving the queue after scancel: $left; retry \`nodebook stop\`, or ask the cluster's admins" left "$left"
  fi
  return 0
}

cmd_list() {
  local v id state running
  while [ "$#" -gt 0 ]; do
    case $1 in
      --scheduler) SCHEDULER=$2; shift 2 ;;
      *) usage "list: unknown option $1" ;;
    esac
  done
  load_setup
  find_sessions
  if sched_queue; then
    running=()
    for v in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do
      IFS='|' read -r id state _ <<<"$v"
      [ "$state" = RUNNING ] && running+=("$id")
    done
    sched_use "${running[@]+"${running[@]}"}"
  fi
  for v in "${SESSIONS[@]+"${SESSIONS[@]}"}"; do emit_session "$v"; done
  emit listed "#count" "${#SESSIONS[@]}"
}

# hop: on the login node, an inner ssh to the node that listens on a 0600 unix socket here
# (--tunnel hops). ssh does not remove a socket it listened on: this does, when ssh ends.
cmd_hop() {
  [ "$#" -eq 3 ] || usage "hop JOB NODE TARGET"
  load_setup
  job_paths "$1"
  umask 077
  NODEBOOK_TUNNEL=$1 ssh -T -o ExitOnForwardFailure=yes -o StreamLocalBindUnlink=yes \
    -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -L "$J_HOP:$3" "$2" \
    "$(printf '%q ' "$SELF" hold "$1")"
  rm -f "$J_HOP"
}

# probe NODE [PORT]: can this host open a TCP connection to NODE's port (22)? A tunnel's -W
# through the master learns only "Session open refused by peer"; this says what the login node
# itself meets: refused, no route, a name that does not resolve, or an open port.
cmd_probe() {
  [ "$#" -ge 1 ] || usage "probe NODE [PORT]"
  local err
  # shellcheck disable=SC2016 # the inner bash expands its own $1 and $2
  if err=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "${2:-22}" 2>&1); then
    emit probe node "$1" "#open" true
  else
    err=${err%%$'\n'*}
    err=${err##*: }
    emit probe node "$1" "#open" false error "connect to $1 port ${2:-22}: ${err:-timed out}"
  fi
}

# kernels: the kernels the job's Jupyter offers (nodebook's data dir first on JUPYTER_PATH, as
# in the job), one line each, then their count and the default.
cmd_kernels() {
  [ "$#" -eq 0 ] || usage "kernels takes no arguments"
  load_setup
  [ -x "$S_python" ] || die not-set-up "$E_SETUP" "Jupyter's Python $S_python is missing on $(hostname -s): run \`nodebook setup\` again"
  [ -n "${S_data_dir:-}" ] && export JUPYTER_PATH=$S_data_dir${JUPYTER_PATH:+:$JUPYTER_PATH}
  export JUPYTER_CONFIG_DIR=$S_config_dir
  "$S_python" - "${S_data_dir:-}" "${S_default_kernel:-python3}" <<'EOF' ||
import json, os, sys
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.paths import jupyter_data_dir

data_dir, default = sys.argv[1:]
places = {os.path.normpath(data_dir): "nodebook"} if data_dir else {}
places.setdefault(os.path.normpath(jupyter_data_dir()), "user")
specs = KernelSpecManager().get_all_specs()
# What jupyter_client runs for a kernelspec whose argv starts with a bare "python".
own = dict.fromkeys(["python", "python3", "python%d.%d" % sys.version_info[:2]], sys.executable)
for name in sorted(specs):
    spec, resource_dir = specs[name]["spec"], specs[name]["resource_dir"]
    ours = (spec.get("metadata") or {}).get("nodebook") or {}
    top = os.path.normpath(os.path.dirname(os.path.dirname(resource_dir)))
    source = places.get(top) or ("jupyter" if top.startswith(sys.prefix) else "system")
    argv0 = (spec.get("argv") or [""])[0]
    print(json.dumps({
        "nodebook": "kernel", "name": name, "display_name": spec.get("display_name") or name,
        "language": spec.get("language") or "", "source": source,
        "managed": ours.get("managed_by") == "nodebook_kernels", "default": name == default,
        "kind": ours.get("kind") or "", "prefix": ours.get("prefix") or "",
        "python": ours.get("python") or own.get(argv0, argv0),
        "modules": ours.get("modules") or [], "resource_dir": resource_dir}))
print(json.dumps({"nodebook": "kernels", "count": len(specs), "default": default,
                  "default_found": default in specs, "data_dir": data_dir}))
EOF
    die error "$E_ERROR" "could not list the kernels with $S_python (jupyter_client): run \`nodebook setup\` again"
}
