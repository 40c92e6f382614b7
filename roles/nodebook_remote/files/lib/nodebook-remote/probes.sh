# shellcheck shell=bash
# nodebook-remote, the probes that run before setup (piped in, or installed): the module's
# Python for setup (environment), `nodebook doctor` (doctor) and `nodebook init` (discover).
nb_part_probes() { :; }

# close_matches NAME AVAILABLE...: modules like NAME (same family, else same 3-letter prefix).
close_matches() {
  local want=$1 family m out=() low
  shift
  family=${want%%/*}
  family=${family,,}
  for m in "$@"; do
    low=${m,,}
    [[ $low == *"$family"* ]] && out+=("$m")
  done
  if [ "${#out[@]}" -eq 0 ]; then
    for m in "$@"; do
      low=${m,,}
      [[ $low == "${family:0:3}"* ]] && out+=("$m")
    done
  fi
  json_list "${out[@]+"${out[@]}"}"
}

# avail_modules: every module `module -t avail` lists, from Lmod or Environment Modules (both
# print it on stderr): no directory headers ("/path:"), no family lines such as "python/", no
# colours, tags or symbolic versions: Lmod's "(default)" or "(@alias)", Environment Modules'
# "(default:latest)" and " <L>" (loaded: a login shell's site default is listed too).
avail_modules() {
  module -t avail 2>&1 | sed -n 's/\x1b\[[0-9;]*m//g; s/ *<[^<>]*>$//; s/([^()]*)$//; /^[^ ]*[^:/]$/p'
}

# environment: load the modules (login shell), report the Python setup will build on.
cmd_environment() {
  local py_cmd=python3 m py version avail=()
  while [ "$#" -gt 0 ]; do
    case $1 in
      --python-command) py_cmd=$2; shift 2 ;;
      --) shift; break ;;
      -*) usage "environment: unknown option $1" ;;
      *) break ;;
    esac
  done
  if [ "$#" -gt 0 ]; then
    if ! type module >/dev/null 2>&1; then
      die no-module-command "$E_SETUP" "\`module\` is not available in a login shell on $(hostname -s) (no Lmod or Environment Modules?); set nodebook_environment_module to \"\" to use the login shell's $py_cmd instead"
    fi
    for m in "$@"; do
      if ! module is-avail "$m" >/dev/null 2>&1 || ! module load "$m" >/dev/null 2>&1; then
        mapfile -t avail < <(avail_modules)
        close_matches "$m" "${avail[@]+"${avail[@]}"}"
        die missing-module "$E_SETUP" "module $m does not exist (or does not load) on $(hostname -s)" module "$m" "#close" "$REPLY"
      fi
    done
  fi
  py=$(command -v "$py_cmd") || die no-python "$E_SETUP" "\`$py_cmd\` is not on PATH after loading ${*:-no module}: set nodebook_environment_module to a module that provides Python, or nodebook_environment_python_command to its command"
  version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>&1)
  emit environment home "$HOME" python "$py" version "$version" path "$PATH" \
    ld_library_path "${LD_LIBRARY_PATH:-}"
}

# doctor: what `nodebook doctor` checks on the login node (works before setup, too).
cmd_doctor() {
  local m f=$NB_BASE/setup.json py=""
  if [ -r "$f" ]; then
    emit check name setup "#ok" true detail "$f"
    py=$(sed -n 's/^  "python": "\(.*\)",\{0,1\}$/\1/p' "$f")
    if [ -n "$py" ] && [ -x "$py" ]; then
      emit check name python "#ok" true detail "$py"
    else
      emit check name python "#ok" false detail "Jupyter's Python is missing: ${py:-not recorded}"
    fi
    [ -x "$NB_BASE/bin/nodebook-remote" ] || emit check name helper "#ok" false detail "$NB_BASE/bin/nodebook-remote is missing"
  else
    emit check name setup "#ok" false detail "not set up (no $f)"
  fi
  if [ "$#" -gt 0 ]; then
    for m in "$@"; do
      if bash -lc 'module is-avail "$1"' nodebook "$m" >/dev/null 2>&1; then
        emit check name module "#ok" true detail "$m available"
      else
        emit check name module "#ok" false detail "$m is not available (module avail)" module "$m"
      fi
    done
  else
    emit check name module "#ok" true detail "none needed"
  fi
  sched_doctor
}

# py_info PYTHON: "version|implementation|libc" of a Python (libc like glibc-2.36), in REPLY.
py_info() {
  REPLY=$("$1" -c 'import platform, sys; print("%d.%d.%d|%s|%s" % (sys.version_info[:3] + (sys.implementation.name, "-".join(platform.libc_ver()))))' 2>/dev/null)
}

# emit_python MODULE PYTHON: a `python` line (the module's Python, its version and platform).
emit_python() {
  local version impl libc
  py_info "$2"
  IFS='|' read -r version impl libc <<<"$REPLY"
  [ -n "$version" ] || return 1
  emit python module "$1" python "$2" version "$version" implementation "$impl" libc "$libc"
}

# module_python MODULE: the Python a module puts first on PATH (in a subshell), in REPLY.
module_python() {
  REPLY=$( (module load "$1" >/dev/null 2>&1 && { command -v python3 || command -v python; }) 2>/dev/null)
  [ -n "$REPLY" ]
}

# index_reachable URL PYTHON: 0 when URL answers (2xx/3xx) from here, 1 when not, 2 when there
# is nothing to ask with (no curl, no Python).
index_reachable() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL -m 5 -o /dev/null "$1" 2>/dev/null
    return $(($? == 0 ? 0 : 1))
  fi
  [ -n "$2" ] || return 2
  "$2" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" >/dev/null 2>&1 || return 1
}

# discover: the cluster as `nodebook init` needs it, in one round trip (a login shell: modules).
#   --index URL      the package index page to probe (default PyPI's page of pip)
#   --module M       also try this module, Python-like or not (repeatable): a `module` line
#   --only WHAT,...  host, scheduler, python, index (default all; the setup role asks only index)
#   --python CMD     the Python that probes the index when there is no curl (default python3)
cmd_discover() {
  local index=https://pypi.org/simple/pip/ only=host,scheduler,python,index probe_py="" line m
  local sys_py="" avail=() wanted=() all=() rc version impl libc
  while [ "$#" -gt 0 ]; do
    case $1 in
      --index) index=$2; shift 2 ;;
      --module) wanted+=("$2"); shift 2 ;;
      --only) only=$2; shift 2 ;;
      --python) probe_py=$2; shift 2 ;;
      *) usage "discover: unknown option $1" ;;
    esac
  done
  if [[ ,$only, == *,host,* ]]; then
    emit host host "$(hostname -f 2>/dev/null || hostname)" user "$ME" home "$HOME" \
      platform "$(uname -s)-$(uname -m)"
  fi
  if [[ ,$only, == *,scheduler,* ]]; then
    sched_discover
  fi
  sys_py=$(command -v python3 2>/dev/null)
  if [[ ,$only, == *,python,* ]]; then
    [ -n "$sys_py" ] && emit_python "" "$sys_py"
    if type module >/dev/null 2>&1; then
      mapfile -t all < <(avail_modules)
      # Only Python-like modules are loaded (one by one, each in a subshell).
      mapfile -t avail < <(printf '%s\n' "${all[@]+"${all[@]}"}" |
        grep -Ei '(^|/)(python|conda|anaconda|miniconda|miniforge|mamba|micromamba)[^/]*(/|$)')
      for m in "${avail[@]+"${avail[@]}"}"; do
        module_python "$m" && emit_python "$m" "$REPLY"
      done
      for m in "${wanted[@]+"${wanted[@]}"}"; do
        if ! module is-avail "$m" >/dev/null 2>&1; then
          close_matches "$m" "${all[@]+"${all[@]}"}"
          emit module name "$m" "#exists" false "#close" "$REPLY"
        elif module_python "$m" && [ "$REPLY" != "$sys_py" ]; then
          line=$REPLY
          py_info "$line"
          IFS='|' read -r version impl libc <<<"$REPLY"
          emit module name "$m" "#exists" true python "$line" version "$version" implementation "$impl" libc "$libc"
        else
          # It loads, but the python3 on PATH is still the login shell's own (or there is none).
          emit module name "$m" "#exists" true python "" version ""
        fi
      done
    else
      for m in "${wanted[@]+"${wanted[@]}"}"; do
        emit module name "$m" "#exists" false "#close" "[]" detail "no \`module\` command in a login shell"
      done
    fi
  fi
  if [[ ,$only, == *,index,* ]]; then
    index_reachable "$index" "${probe_py:-$sys_py}"
    rc=$?
    case $rc in
      0) emit index url "$index" "#reachable" true ;;
      1) emit index url "$index" "#reachable" false ;;
      *) emit index url "$index" "#reachable" null ;;
    esac
  fi
}
