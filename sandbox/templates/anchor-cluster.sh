set -e
hostname $host
$module_system
mount --bind $etc/hosts /etc/hosts
mount --bind $etc/ssh /etc/ssh
mount -t tmpfs -o mode=1777,size=1g tmp-$host /tmp
mount -t tmpfs -o mode=1777,size=1g vartmp-$host /var/tmp
mount --bind $etc/slurm /etc/slurm
$host_mounts
exec sleep infinity
