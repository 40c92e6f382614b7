# /etc/profile.d/sandbox-site.sh of the sandbox's cluster hosts (login, cn01, cn02), written by
# sandbox/cluster.py and laid over their /etc/profile.d by an overlay in their own mount
# namespace (the laptop shares this machine's /etc and stays quiet). Login shells on real
# clusters talk: a greeting, a quota report, a warning. Every login shell here does the same
# (`ssh login`, `bash -l -s`, `bash -lc CMD`, a batch job's `#!/bin/bash -l`), on stdout and on
# stderr, so nothing in nodebook may take a login shell's output for its own.
echo "Welcome to the nodebook sandbox cluster ($$(hostname -s)). Be kind to the login node."
echo "Disk quota for $$(id -un): /home 1.2G of 50G used (2%), 12k of 1M files"
echo "warning: /scratch is purged of files older than 30 days" >&2
