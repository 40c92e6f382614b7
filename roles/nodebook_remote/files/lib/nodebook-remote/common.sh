# shellcheck shell=bash
# nodebook-remote's library, loaded first by every command (bin/nodebook-remote): the exit
# statuses, JSON output and errors, pauses, setup.json and the paths of a job's files.
nb_part_common() { :; }

NB_SETUP_FORMAT=2 # the setup.json format this helper reads
SCHED_POLL=5      # s between scheduler queries while waiting (<= 12 per minute)
FS_POLL=0.05      # s between looks at the shared file system while waiting (a stat: cheap)
START_POLL=0.02   # s between looks while a started job's Jupyter starts (a second or so)
WRITE_EVERY=10    # naps between empty lines of a long wait (its session gone: the write fails)
DEADMAN_EXIT=75   # the job's exit status when its dead-man's switch ended it

E_ERROR=1 E_USAGE=2 E_SETUP=3 E_SCHED=5 E_ENDED=6 E_DUP=8 E_NOTFOUND=9

# --------------------------------------------------------------------------------- output

# json_str VALUE: the JSON string literal for VALUE, in REPLY.
json_str() {
  local LC_ALL=C s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  s=${s//[$'\001'-$'\037']/}
  REPLY="\"$s\""
}

# json_list VALUE...: a JSON array of strings, in REPLY.
json_list() {
  local out="" v
  for v in "$@"; do
    json_str "$v"
    out+="${out:+, }$REPLY"
  done
  REPLY="[$out]"
}

# emit KIND [KEY VALUE]...: one JSON line. A KEY starting with '#' takes VALUE as raw JSON.
emit() {
  local out="{\"nodebook\": \"$1\"" key
  shift
  while [ "$#" -ge 2 ]; do
    key=$1
    if [ "${key:0:1}" = "#" ]; then
      out+=", \"${key:1}\": $2"
    else
      json_str "$2"
      out+=", \"$key\": $REPLY"
    fi
    shift 2
  done
  printf '%s}\n' "$out"
}

# die KIND STATUS MESSAGE [KEY VALUE]...: the error line, then exit STATUS.
die() {
  local kind=$1 status=$2 message=$3
  shift 3
  emit error error "$kind" message "$message" "$@"
  exit "$status"
}

usage() { die usage "$E_USAGE" "nodebook-remote: $*"; }

now() { printf -v NOW '%(%s)T' -1; }

# nap SECONDS: sleep without a fork. read's timeout, on a pipe that this shell holds both ends
# of and nobody writes to; a poll loop's `sleep` cost a fork and an exec on every look.
# Where no such pipe can be made, it falls back to sleep.
NAP_FD=""
nap() {
  if [ -z "$NAP_FD" ]; then
    exec {NAP_FD}<> <(:) 2>/dev/null || NAP_FD=none
  fi
  if [ "$NAP_FD" = none ]; then sleep "$1"; else read -r -t "$1" -u "$NAP_FD" _ || :; fi
}

# tail_lines FILE N: the last N non-empty lines of FILE as a JSON array, in REPLY.
tail_lines() {
  local lines=()
  if [ -r "$1" ]; then
    mapfile -t lines < <(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n "$2")
  fi
  json_list "${lines[@]+"${lines[@]}"}"
}

# --------------------------------------------------------------------------------- layout

ME=${USER:-}
[ -n "$ME" ] || ME=$(id -un)

# load_setup: setup.json's top-level values as S_<key> (one key per line, as the role writes it).
load_setup() {
  local f=$NB_BASE/setup.json line key value
  # The keys this helper reads (docs/design.md, "setup.json").
  S_format="" S_python="" S_bin_dir="" S_app="" S_config_dir="" S_data_dir="" S_job_script=""
  S_jobs_dir="" S_runtime_base="" S_job_name="" S_endpoint="" S_heartbeat_timeout=""
  S_start_timeout="" S_poll_interval="" S_pending_limit=""
  if [ ! -r "$f" ]; then
    die not-set-up "$E_SETUP" "nodebook is not set up for $ME on $(hostname -s) (no $f): run \`nodebook setup\` first"
  fi
  while IFS= read -r line; do
    case $line in '  "'*'": '*) ;; *) continue ;; esac
    key=${line#  \"}
    key=${key%%\"*}
    value=${line#*\": }
    value=${value%,}
    case $value in
      \"*\") value=${value:1:${#value}-2} ;;
      \{* | \[*) continue ;;
    esac
    case $key in '' | *[!a-z_]*) continue ;; esac
    printf -v "S_$key" '%s' "$value"
  done <"$f"
  if [ "${S_format:-1}" != "$NB_SETUP_FORMAT" ]; then
    die not-set-up "$E_SETUP" "the setup on $(hostname -s) is from another nodebook version (setup.json format ${S_format:-1}, this helper reads $NB_SETUP_FORMAT): run \`nodebook setup\` again"
  fi
  for key in jobs_dir runtime_base job_script python job_name bin_dir app config_dir; do
    value=S_$key
    [ -n "${!value:-}" ] || die not-set-up "$E_SETUP" "$f has no $key: run \`nodebook setup\` again"
  done
}

# job_paths JOB: where one job's files are (J_*).
job_paths() {
  case $1 in
    '' | s | *[!0-9s]* | ?*s*) usage "bad job id '$1'" ;;
  esac
  J_ID=$1
  J_DIR=$S_jobs_dir/$1
  J_CONN=$J_DIR/connection.json
  J_HB=$J_DIR/heartbeat
  J_LOG=$S_jobs_dir/$1.log
  J_PID=$S_jobs_dir/$1.pid
  J_SEEN=$S_jobs_dir/$1.seen
  J_USE=$S_jobs_dir/$1.use # the helper's previous look at the job's CPU time (login.sh use_args)
  J_RUN=$S_runtime_base/nodebook-$ME-$1
  J_SOCK=$J_RUN/jupyter.sock
  J_TOKEN=$J_RUN/token
  J_HOP=$S_runtime_base/nodebook-$ME-$1-hop.sock
}

# files: the helper as installed here, each of its directories and files as "MODE PATH" (a file
# with " SHA256" after it), in one JSON line. Setup's re-run compares them with what it would
# install and skips the install when every one of its lines is there.
cmd_files() {
  local dirs=("$NB_BASE" "$NB_BASE/bin" "$NB_BASE/lib" "$NB_BASE/lib/nodebook-remote") entries=()
  local files=("$NB_BASE"/bin/* "$NB_BASE"/lib/nodebook-remote/*) mode path sum
  local -A sums=()
  while read -r sum path; do sums[$path]=$sum; done < <(sha256sum -- "${files[@]}" 2>/dev/null)
  while read -r mode path; do
    entries+=("$mode $path${sums[$path]:+ ${sums[$path]}}")
  done < <(stat -c '%a %n' -- "${dirs[@]}" "${files[@]}" 2>/dev/null)
  json_list "${entries[@]+"${entries[@]}"}"
  emit files "#entries" "$REPLY"
}

cmd_version() {
  emit version "#protocol" "$NB_PROTOCOL" "#setup_format" "$NB_SETUP_FORMAT" base "$NB_BASE"
}
