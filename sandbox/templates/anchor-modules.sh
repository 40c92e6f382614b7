# Profile modules: Debian's environment-modules (extracted into $root, it conflicts with lmod)
# laid over /etc and /usr, read-only, under the sandbox's own layer $etc/modules-etc (the site's
# profile script, lmod.sh whited out, Environment Modules' modulespath). /etc/profile.d/modules.sh
# defines `module` in login shells. One overlay per directory: none is stacked on another.
mount -t overlay sandbox-etc -o lowerdir=$etc/modules-etc:$root/etc:/etc /etc
mount -t overlay sandbox-usr -o lowerdir=$root/usr:/usr /usr
