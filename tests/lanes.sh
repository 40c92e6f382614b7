#!/usr/bin/env bash
# make test's pytest run, in lanes side by side on one sandbox (tests/harness/lanes.py says
# which test runs where and which runs alone): the tests that need no sandbox, bob's lane and
# the main lane at once, then the destructive tests on a sandbox of their own (they restart it).
# A sandbox that was up before (someone's) is left alone: every test in one lane, as before.
# Extra arguments go to every pytest run. Exit status: the first failing lane's (5, no tests: 1).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
pytest=${PYTEST:-.venv/bin/pytest}
cluster() { "${PYTHON:-python3}" sandbox/cluster.py "$@"; }

if cluster status >/dev/null 2>&1; then
  "$pytest" "$@" tests
  rc=$?
  [ "$rc" -eq 5 ] && { echo "make test: pytest collected no tests" >&2; rc=1; }
  exit "$rc"
fi

logs=$(mktemp -d)
pids=()
# shellcheck disable=SC2329 # run by the EXIT trap
finish() {
  trap '' INT TERM
  [ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}" 2>/dev/null && wait
  cluster down >/dev/null 2>&1 || true
  rm -rf "$logs"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

started=$SECONDS
cluster up || exit 1
"$pytest" -p no:cacheprovider "$@" -m "not sandbox" tests >"$logs/unit" 2>&1 &
pids+=($!)
# (each sandbox lane lists its slowest tests: what to move or shorten when the suite grows)
"$pytest" -p no:cacheprovider --durations=15 "$@" -m "sandbox and bob_lane and not destructive" tests >"$logs/bob" 2>&1 &
pids+=($!)
"$pytest" --durations=25 "$@" -m "sandbox and not bob_lane and not destructive" tests
rcs=($?)
for pid in "${pids[@]}"; do
  wait "$pid"
  rcs+=($?)
done
pids=()
for lane in unit bob; do
  echo "=== make test: the ${lane} lane (beside the main one) ==="
  cat "$logs/$lane"
done
echo "=== make test: the three lanes took $((SECONDS - started)) s; now the destructive tests ==="
cluster down || rcs+=(1)
"$pytest" -p no:cacheprovider "$@" -m destructive tests
rcs+=($?)
for rc in "${rcs[@]}"; do
  [ "$rc" -eq 5 ] && { echo "make test: a lane collected no tests" >&2; exit 1; }
  [ "$rc" -ne 0 ] && exit "$rc"
done
exit 0
