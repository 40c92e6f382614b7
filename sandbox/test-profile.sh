#!/usr/bin/env bash
# make test-profile PROFILE=modules [PYTEST_ARGS=...]: the tests marked profile_session
# (tests/conftest.py PROFILE_SESSION) against the sandbox in another profile. The sandbox is
# brought down, up in PROFILE, the tests run, and it goes down again whatever happens; a sandbox
# that was up before comes back up in the profile it had (fresh: its jobs and state are gone).
set -uo pipefail
profile=${1:?usage: sandbox/test-profile.sh PROFILE [PYTEST-ARGS...]}
shift
cd "$(dirname "$0")/.." || exit 1
state=${NODEBOOK_SANDBOX_STATE:-/var/lib/nodebook-sandbox}
cluster() { "${PYTHON:-python3}" sandbox/cluster.py "$@"; }

before=""
if cluster status >/dev/null 2>&1; then
  before=$(cat "$state/profile" 2>/dev/null || echo lmod)
fi
# shellcheck disable=SC2329 # run by the EXIT trap
finish() {
  trap '' INT TERM
  cluster down || true
  if [ -n "$before" ]; then
    echo "test-profile: bringing the sandbox back up in profile $before, as it was"
    cluster up --profile "$before" || true
  fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -d "$state" ] && { cluster down || exit 1; }
cluster up --profile "$profile" || exit 1
NODEBOOK_SANDBOX_PROFILE=$profile "${PYTEST:-.venv/bin/pytest}" -m profile_session "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test-profile: pytest collected no tests" >&2
  rc=1
fi
exit "$rc"
