# Put first in each sandbox user's ~/.bashrc by sandbox/cluster.py (the rest is /etc/skel's).
# It talks before the interactive check, as many users' and sites' module loads do: bash reads
# ~/.bashrc in the non-login shell sshd starts for a command (`ssh login CMD`: Ansible's tasks,
# the driver's helper calls, a tunnel's hold), so every one of them gets this line on stderr.
# Only on stderr: a .bashrc that prints on stdout there breaks scp and rsync, and sites have
# their users fix it.
echo "bashrc: loading the site's default environment (gcc/12)" >&2
