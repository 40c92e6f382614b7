set -e
hostname $host
mount --bind $etc/hosts /etc/hosts
mount -t tmpfs -o mode=1777,size=1g tmp-$host /tmp
mount --bind $etc/slurm /etc/slurm
mount --bind $etc/modulespath /etc/lmod/modulespath
$host_mounts
exec sleep infinity
