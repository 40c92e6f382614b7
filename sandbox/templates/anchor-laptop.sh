hostname $host
exec sleep infinity
