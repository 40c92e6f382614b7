"""What the end-to-end tests and the benchmarks share to act on the sandbox cluster.

- ``tests.harness.sandbox``: where the sandbox is (its state dir, ssh config, inventory), and
  one way to run a command as root or as a user (login shell) on laptop, login, cn01, cn02.
- ``tests.harness.driver``: one class for a ``python -m driver ... --json`` process in the
  laptop's namespace (own session, SIGINT at its default, private TMPDIR and state dir), its
  events with arrival times, its exit and its resource use (wait4).
- ``tests.harness.leftovers``: one checker of what a driver run left behind, scoped to the run's
  own job ids, temp dir and port, with the cluster's files at the paths the helper reports.
- ``tests.harness.sshlog``: an ``ssh`` wrapper first on the driver's PATH that logs every
  invocation, and how to read the log (connections opened, remote commands).
- ``tests.harness.wait``: ``wait_for``, a bounded wait for a condition.

Used by tests/ (through the fixtures in tests/fixtures/) and by bench/ (run as ``python -m
bench.run`` from the repository's root, so ``tests.harness`` imports as a package).
"""
