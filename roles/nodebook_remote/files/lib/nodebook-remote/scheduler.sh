# shellcheck shell=bash
# nodebook-remote's scheduler adapter: every call of a Slurm command (sbatch, squeue, scontrol,
# scancel, sacct, sacctmgr, sinfo) is in this file, behind the functions below; the commands in
# login.sh and probes.sh call these, never Slurm, and never look at $SCHEDULER themselves: they
# ask sched_queue and sched_private_tmp. SCHEDULER=none is a standalone server (no queue: the
# job is a process on this host, found by its pid file). A second scheduler (Grid Engine) is
# another implementation of these functions, and answers sched_queue.
nb_part_scheduler() { :; }

# sched_queue: true when jobs go through a batch queue (and run on other hosts, whose host keys
# the laptop needs); false for a standalone server.
sched_queue() { [ "$SCHEDULER" != none ]; }

# sched_private_tmp: true when each job may get a /tmp of its own (Slurm's job_container/tmpfs),
# so that a second job on the same node cannot see the first one's socket.
sched_private_tmp() { [ "$SCHEDULER" = slurm ]; }

# squeue asks slurmctld for the federation first (REQUEST_FED_INFO): two RPCs a query. Only this
# cluster's jobs matter here, so one (`--local`; older squeue ignore the variable).
export SQUEUE_LOCAL=1

# is_waiting STATE: the job has not started yet (UNKNOWN: the scheduler did not answer this time).
is_waiting() { case $1 in PENDING | CONFIGURING | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | UNKNOWN) return 0 ;; esac; return 1; }

# query JOB: its state now, in Q_STATE Q_REASON Q_NODE Q_START; GONE when Slurm has forgotten it
# (a job that ended shows its end state while slurmctld remembers it). Returns 1 when the query
# itself fails. One RPC: `scontrol --local show job` is REQUEST_JOB_INFO_SINGLE alone, where
# squeue also loads the partitions (REQUEST_PARTITION_INFO: measured with sdiag); squeue is the
# fallback for a Slurm whose scontrol has no --local.
SCONTROL_LOCAL=yes
query() {
  local out line
  Q_STATE=GONE Q_REASON="" Q_NODE="" Q_START=""
  if [ "$SCHEDULER" = none ]; then
    if pid_alive "$1"; then Q_STATE=RUNNING Q_NODE=$(hostname -s); fi
    return 0
  fi
  if [ "$SCONTROL_LOCAL" = yes ]; then
    out=$(scontrol --local -o show job "$1" 2>&1)
    case $out in
      *"Invalid job id"*) return 0 ;;
      *JobState=*)
        line="JobState=${out#*JobState=}" # (a warning on stderr may come first)
        line=${line%%$'\n'*}
        Q_STATE=${line#*JobState=}
        Q_STATE=${Q_STATE%% *}
        Q_REASON=${line#* Reason=}
        Q_REASON=${Q_REASON%% Dependency=*}
        Q_NODE=${line#* NodeList=}
        Q_NODE=${Q_NODE%% *}
        Q_START=${line#* StartTime=}
        Q_START=${Q_START%% *}
        case $Q_REASON in None | '(null)') Q_REASON="" ;; esac
        case $Q_NODE in '(null)') Q_NODE="" ;; esac
        case $Q_START in N/A | Unknown | None) Q_START="" ;; esac
        return 0
        ;;
      *"unrecognized option"* | *"invalid option"*) SCONTROL_LOCAL=no ;;
      *) return 1 ;;
    esac
  fi
  if ! sched_squeue -h -j "$1" -o '%i|%T|%r|%N|%S'; then
    case $REPLY in *"Invalid job id"*) return 0 ;; *) return 1 ;; esac
  fi
  out=$REPLY
  [ -n "$out" ] || return 0
  case $out in *'|'*) ;; *) return 1 ;; esac
  IFS='|' read -r _ Q_STATE Q_REASON Q_NODE Q_START <<<"${out%%$'\n'*}"
  case $Q_REASON in None | '(null)') Q_REASON="" ;; esac
  case $Q_START in N/A | Unknown | None) Q_START="" ;; esac
  return 0
}

pid_alive() {
  local pid=""
  [ -r "$S_jobs_dir/$1.pid" ] && read -r pid <"$S_jobs_dir/$1.pid"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# final_state JOB: how a job that left (or is leaving) the queue ended, in F_* (sacct where
# Slurm keeps accounting, else squeue's memory of it).
final_state() {
  local out="" line state exit_code reason
  F_STATE="" F_EXIT="" F_REASON="" F_BY="" F_SOURCE=squeue
  if [ "$SCHEDULER" = none ]; then
    F_STATE=COMPLETED
    return
  fi
  local i
  # slurmdbd's record of a job that just ended lags by about a second: ask until it is final.
  for i in 1 2 3 4 5 6 7 8 9 10; do
    if ! command -v sacct >/dev/null 2>&1 || ! out=$(sacct -n -P -X -j "$1" -o State,ExitCode,Reason 2>/dev/null); then
      out=""
      break
    fi
    case ${out%%|*} in '' | PENDING | RUNNING | COMPLETING | CONFIGURING | REQUEUED) nap 0.3 ;; *) break ;; esac
  done
  if [ -n "$out" ]; then
    IFS='|' read -r state exit_code reason <<<"${out%%$'\n'*}"
    F_SOURCE=sacct
    case $state in
      "CANCELLED by "*)
        F_BY=${state#CANCELLED by }
        F_STATE=CANCELLED
        case $F_BY in *[!0-9]*) ;; *) F_BY=$(getent passwd "$F_BY" | cut -d: -f1) || F_BY=${state#CANCELLED by } ;; esac
        ;;
      *) F_STATE=${state%% *} ;;
    esac
    F_EXIT=$exit_code
    case $reason in None | '') ;; *) F_REASON=$reason ;; esac
    return
  fi
  line=$(squeue -h -t all -j "$1" -o '%T|%r' 2>/dev/null | head -n 1)
  IFS='|' read -r F_STATE F_REASON <<<"$line"
  case $F_REASON in None | '(null)') F_REASON="" ;; esac
  [ -n "$F_STATE" ] || F_STATE=GONE
}

# sbatch_option LONG SHORT SBATCH-OPTS...: the value the job gets for sbatch's --LONG (or -SHORT):
# the last one among SBATCH-OPTS, else the job script's #SBATCH line, else "" (REPLY).
sbatch_option() {
  local long=$1 short=$2 line a next=false
  shift 2
  REPLY=""
  if [ -r "${S_job_script:-}" ]; then
    while IFS= read -r line; do
      case $line in
        "#SBATCH --$long="*) REPLY=${line#"#SBATCH --$long="} ;;
        "#SBATCH --$long "* | "#SBATCH -$short "*) REPLY=${line#"#SBATCH "*" "} ;;
        '#'* | '') ;;
        *) break ;; # sbatch reads #SBATCH lines up to the first command
      esac
    done <"$S_job_script"
  fi
  for a in "$@"; do
    if [ "$next" = true ]; then REPLY=$a next=false; continue; fi
    case $a in
      "--$long="*) REPLY=${a#*=} ;;
      "--$long" | "-$short") next=true ;;
      "-$short"?*) REPLY=${a#-"$short"} ;;
    esac
  done
  REPLY=${REPLY%% *}
}

# my_accounts: this user's Slurm accounts (ACCOUNTS) and default account (DEFAULT_ACCOUNT), from
# slurmdbd; both empty where there is no accounting to ask.
my_accounts() {
  local default account
  ACCOUNTS=() DEFAULT_ACCOUNT=""
  while IFS='|' read -r default account; do
    [ -n "$account" ] || continue
    DEFAULT_ACCOUNT=$default
    case " ${ACCOUNTS[*]-} " in *" $account "*) ;; *) ACCOUNTS+=("$account") ;; esac
  done < <(sacctmgr -n -P show user "$ME" withassoc format=defaultaccount,account 2>/dev/null)
}

# partition_accounts [PARTITION]: the partition's (else the default partition's) name, and the
# accounts it admits: P_NAME, P_ALLOW ("ALL" when any), P_DENY (one scontrol call).
partition_accounts() {
  local line field fields
  P_NAME="" P_ALLOW=ALL P_DENY=""
  while IFS= read -r line; do
    # Asked for one partition, scontrol prints its line only; else the default's is wanted.
    if [ -z "$1" ]; then
      case " $line " in *" Default=YES "*) ;; *) continue ;; esac
    fi
    read -ra fields <<<"$line"
    for field in "${fields[@]}"; do
      case $field in
        PartitionName=*) P_NAME=${field#*=} ;;
        AllowAccounts=*) P_ALLOW=${field#*=} ;;
        DenyAccounts=*) P_DENY=${field#*=} ;;
      esac
    done
    return 0
  done < <(scontrol -o show partition ${1:+"$1"} 2>/dev/null)
  return 1
}

# admits ACCOUNT: the partition of partition_accounts takes jobs of ACCOUNT.
admits() {
  case ,$P_DENY, in *",$1,"*) return 1 ;; esac
  case ,$P_ALLOW, in ,ALL, | *",$1,"*) return 0 ;; esac
  return 1
}

# account_fix SBATCH-OPTS...: the fix for "Invalid account or account/partition combination", in
# REPLY, with the accounts the job's partition admits and which of the user's would do. Asked
# only on a refusal: one scontrol (the partition) and one sacctmgr (the user's accounts).
account_fix() {
  local part account whose admitted=() a list what
  sbatch_option partition p "$@"
  part=${REPLY%%,*}
  sbatch_option account A "$@"
  account=$REPLY
  my_accounts
  whose=""
  if [ -z "$account" ] && [ -n "$DEFAULT_ACCOUNT" ]; then
    account=$DEFAULT_ACCOUNT whose=" (your default account)"
  fi
  list=${ACCOUNTS[*]-}
  list=${list// /, }
  # A partition that admits only some accounts, and not the job's (or the job's is unknown).
  if partition_accounts "$part" && { [ "$P_ALLOW" != ALL ] || [ -n "$P_DENY" ]; } &&
    { [ -z "$account" ] || ! admits "$account"; }; then
    for a in "${ACCOUNTS[@]+"${ACCOUNTS[@]}"}"; do
      admits "$a" && admitted+=("$a")
    done
    if [ "$P_ALLOW" != ALL ]; then
      what="the account"
      case $P_ALLOW in *,*) what="the accounts" ;; esac
      REPLY="partition $P_NAME admits only $what ${P_ALLOW//,/, }"
    else
      REPLY="partition $P_NAME does not admit ${P_DENY//,/, }"
    fi
    [ -n "$account" ] && REPLY+=", not $account$whose"
    if [ "${#admitted[@]}" -gt 0 ]; then
      REPLY+=": pass --account ${admitted[0]} (nodebook_job_account in the inventory keeps it)"
    elif [ -n "$list" ]; then
      REPLY+=", and none of yours ($list) is admitted: pick another --partition (\`sinfo -s\` lists them) or ask the cluster's admins for one of those accounts"
    else
      REPLY+=": pass --account with one of those that is yours, or pick another --partition"
    fi
  elif [ -n "$list" ]; then
    REPLY="account ${account:-?} is not one of yours ($list): pass --account with one of them (nodebook_job_account in the inventory keeps it)"
  else
    REPLY="check --account: \`sacctmgr -n show assoc user=$ME format=account\` lists yours"
  fi
}

# refusal_fix LINE SBATCH-OPTS...: what to change when sbatch refuses a job with LINE, in REPLY.
refusal_fix() {
  case $1 in
    *"Invalid account"*)
      shift
      account_fix "$@" ;;
    *QOSMaxWall* | *"time limit"*)
      REPLY="ask for less --time, or another --partition or --qos (\`sinfo -s\` lists the partitions' limits)" ;;
    *"Invalid qos"* | *QOS*)
      REPLY="check --qos: \`sacctmgr -n show assoc user=$ME format=qos\` lists yours" ;;
    *"Requested node configuration is not available"* | *"Invalid generic resource"*)
      REPLY="ask for less (--gpus, --cpus, --mem) or another --partition (\`sinfo -o '%P %c %m %G'\` lists what each has)" ;;
    *"invalid partition"* | *"Invalid partition"*)
      REPLY="pick another --partition: \`sinfo -s\` lists them" ;;
    *[Mm]emory*)
      REPLY="ask for less --mem (\`sinfo -o '%P %m'\` lists the memory per node)" ;;
    *) REPLY="fix the option it names (\`sinfo -s\` on the login node lists partitions and their time limits)" ;;
  esac
}

# sched_sessions: this user's jobs with setup's job name, in SESSIONS, one line each:
# id|state|node|elapsed|time limit|reason|TRES|comment. Slurm not answering is an error.
sched_sessions() {
  # -O with '|' after each field: tres-alloc (GPUs allocated) has no -o letter.
  sched_squeue -h -u "$ME" -n "$S_job_name" \
    -O 'JobID:|,State:|,NodeList:|,TimeUsed:|,TimeLimit:|,Reason:|,tres-alloc:|,Comment:|' ||
    sched_silent "$REPLY"
  [ -n "$REPLY" ] && mapfile -t SESSIONS <<<"$REPLY"
}

# sched_squeue ARG...: the jobs' lines squeue printed, in REPLY (every format here starts with
# the job id: a warning on stderr is no job). Status 1 when it failed, REPLY then all it said.
sched_squeue() {
  local all line
  all=$(squeue "$@" 2>&1) || { REPLY=$all && return 1; }
  REPLY=""
  while IFS= read -r line; do
    [[ $line == [0-9]* ]] && REPLY+=${REPLY:+$'\n'}$line
  done <<<"$all"
  return 0
}

# sched_silent OUTPUT: squeue failed (OUTPUT: what it said): the error, and the fix.
sched_silent() {
  die scheduler "$E_SCHED" "Slurm does not answer on $(hostname -s): $(printf '%s' "$1" | tail -n 1); retry when \`squeue\` works on the login node (ask the cluster's admins if it keeps failing)"
}

# sched_use JOB...: what sstat says of each job's batch step (ID.batch, where Jupyter and its
# kernels run), in USE[JOB] as "cpu|rss|peak_rss|gpu_util|gpu_mem", Slurm's words: the CPU time
# used so far, the memory resident now and at its peak, and the GPU use where the node reports
# it (gres/gpuutil, gres/gpumem; nothing for GPUs no plugin watches). One sstat call for all; a
# step it does not answer for (not running yet, no job accounting) has no entry.
declare -gA USE=()
sched_use() {
  local steps="" id tot max cpu rss peak util gmem
  USE=()
  for id; do steps+=${steps:+,}$id.batch; done
  [ -n "$steps" ] || return 0
  while IFS='|' read -r id tot max; do
    tres_get "$tot" cpu && cpu=$REPLY
    tres_get "$tot" mem && rss=$REPLY
    tres_get "$max" mem && peak=$REPLY
    tres_get "$tot" gres/gpuutil && util=$REPLY
    tres_get "$tot" gres/gpumem && gmem=$REPLY
    USE[${id%.batch}]="$cpu|$rss|$peak|$util|$gmem"
  done < <(sstat -n -P -j "$steps" -o JobID,TRESUsageInTot,TRESUsageInMax 2>/dev/null)
}

# tres_get TRES KEY: KEY's value in a TRES list ("cpu=00:01:02,mem=9660K,..."), in REPLY ("" if
# it is not there; returns 0 either way).
tres_get() {
  local item
  REPLY=""
  IFS=',' read -ra TRES_ITEMS <<<"$1"
  for item in "${TRES_ITEMS[@]+"${TRES_ITEMS[@]}"}"; do
    [ "${item%%=*}" = "$2" ] && REPLY=${item#*=}
  done
  return 0
}

# sched_submit TAG ENDPOINT HEARTBEAT SBATCH-OPTS...: submit setup's job script; the job id in
# REPLY. A refusal is an error with sbatch's cause and what to change.
sched_submit() {
  local tag=$1 endpoint=$2 heartbeat=$3 out rc id keep v
  shift 3
  # The job gets this shell's SLURM_*/SBATCH_* variables and the NODEBOOK_* knobs, no more: its
  # `bash -l` builds the login environment. Not --export=NONE (nor --export=VAR=..): with those
  # slurmd first runs the user's login shell through `su -` on the node, a second login that now
  # and then costs a whole second (slurmd sleeps 1 s when su has not exited yet).
  keep=("HOME=$HOME" "USER=$ME" "LOGNAME=$ME" "PATH=$PATH" "NODEBOOK_HEARTBEAT_TIMEOUT=$heartbeat")
  [ -n "$endpoint" ] && keep+=("NODEBOOK_ENDPOINT=$endpoint")
  for v in $(compgen -e); do
    case $v in SLURM_* | SBATCH_*) keep+=("$v=${!v}") ;; esac
  done
  out=$(env -i "${keep[@]}" sbatch --parsable "--job-name=$S_job_name" "--comment=nodebook:$tag" \
    --export=ALL "$@" "$S_job_script" 2>&1)
  rc=$?
  id=$(printf '%s\n' "$out" | sed -n 's/^\([0-9][0-9]*\)\(;.*\)\{0,1\}$/\1/p' | tail -n 1)
  if [ "$rc" != 0 ] || [ -z "$id" ]; then
    out=$(printf '%s\n' "$out" | grep -v '^ *$' | tail -n 1)
    out=${out#sbatch: error: }
    out=${out#Batch job submission failed: } # the cause is what follows
    refusal_fix "$out" "$@"
    die refused "$E_SCHED" "sbatch refused the job: $out; $REPLY"
  fi
  REPLY=$id
}

# sched_cancel_own JOB: cancel JOB at once, nothing read first (Ctrl-C must be quick); 0 when it
# was there to cancel. (scancel of a job that is gone says so in an error on stderr, with status
# 0 on Slurm 22.05; a warning alone is no complaint.) A controller it could not reach is an
# error at once: squeue would not reach it either, and each try costs Slurm's connect retries
# (9 s for scancel, 18 s for squeue in the sandbox).
sched_cancel_own() {
  local err
  err=$(scancel "$1" 2>&1) && [[ $err != *error* ]] && return 0
  case $err in *"Unable to contact slurm controller"*)
    die scheduler "$E_SCHED" "job $1 was not cancelled: Slurm does not answer on $(hostname -s): ${err##*$'\n'}" ;;
  esac
  return 1
}

# sched_jobs: this user's jobs in JOBS, one line each: id|name|comment. Slurm not answering is an
# error (an empty list would read as "no job left to cancel").
sched_jobs() {
  sched_squeue -h -u "$ME" -o '%i|%j|%k' || sched_silent "$REPLY"
  JOBS=()
  [ -n "$REPLY" ] && mapfile -t JOBS <<<"$REPLY"
}

# sched_cancel JOB...: cancel these jobs (their ends are confirmed with sched_queued).
sched_cancel() { scancel "$@" 2>/dev/null; }

# sched_queued JOB,JOB...: those of the jobs still in the queue, separated by spaces; status 1
# when squeue could not answer (a job it has forgotten is an "invalid id": not in the queue).
sched_queued() {
  if ! sched_squeue -h -j "$1" -o %i; then
    case $REPLY in *"Invalid job id"*) REPLY="" ;; *) return 1 ;; esac
  fi
  printf '%s' "${REPLY//$'\n'/ }"
}

# sched_gone JOB: the queue answered, and no longer lists the job.
sched_gone() {
  local left
  left=$(sched_queued "$1") && [ -z "${left// /}" ]
}

# sched_doctor: `nodebook doctor`'s check of the scheduler (a `check` line named slurm).
sched_doctor() {
  local s
  if command -v sinfo >/dev/null 2>&1; then
    if s=$(sinfo -h -o '%P' 2>&1); then
      emit check name slurm "#ok" true detail "partitions: $(printf '%s' "$s" | tr '\n' ' ')"
    else
      emit check name slurm "#ok" false detail "$(printf '%s' "$s" | tail -n 1)"
    fi
  else
    emit check name slurm "#ok" null detail "no Slurm commands on $(hostname -s)"
  fi
}

# sched_discover: the scheduler as `nodebook init` needs it: a `scheduler` line, then a
# `partition` line per partition and an `account` line per account of this user.
sched_discover() {
  local line m name def maxtime deftime fields
  if command -v sinfo >/dev/null 2>&1 && command -v squeue >/dev/null 2>&1; then
    if line=$(sinfo -h -o '%P|%l|%L|%a' 2>&1); then
      emit scheduler name slurm "#ok" true
      # The accounts each partition admits (sinfo has no field for them): one scontrol call.
      declare -A part_allow=()
      while IFS= read -r m; do
        read -ra fields <<<"$m"
        name="" def=ALL
        for m in "${fields[@]+"${fields[@]}"}"; do
          case $m in PartitionName=*) name=${m#*=} ;; AllowAccounts=*) def=${m#*=} ;; esac
        done
        [ -n "$name" ] && part_allow[$name]=$def
      done < <(scontrol -o show partition 2>/dev/null)
      while IFS='|' read -r name maxtime deftime m; do
        [ -n "$name" ] || continue
        def=false
        case $name in *'*') def=true; name=${name%'*'} ;; esac
        emit partition name "$name" "#default" "$def" max_time "$maxtime" default_time "$deftime" state "$m" \
          allow_accounts "${part_allow[$name]:-ALL}"
      done <<<"$line"
      # The user's accounts (none where Slurm keeps no accounting database to ask).
      my_accounts
      for m in "${ACCOUNTS[@]+"${ACCOUNTS[@]}"}"; do
        def=false
        [ "$m" = "$DEFAULT_ACCOUNT" ] && def=true
        emit account name "$m" "#default" "$def"
      done
    else
      emit scheduler name slurm "#ok" false detail "$(printf '%s' "$line" | tail -n 1)"
    fi
  else
    emit scheduler name none "#ok" true
  fi
}
