set -e
hostname $host
mount --bind $etc/hosts /etc/hosts
mount --bind $etc/ssh /etc/ssh
mount -t tmpfs -o mode=1777,size=1g tmp-$host /tmp
mount --bind $etc/slurm /etc/slurm
mount --bind $etc/modulespath /etc/lmod/modulespath
mount -t overlay sandbox-profile -o lowerdir=$etc/profile.d:/etc/profile.d /etc/profile.d
$host_mounts
exec sleep infinity
