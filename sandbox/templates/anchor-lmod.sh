# Profile lmod: Lmod's modulespath names the sandbox's modulefiles, and the site's profile script
# joins the machine's /etc/profile.d (lmod.sh defines `module` in login shells).
mount --bind $etc/modulespath /etc/lmod/modulespath
mount -t overlay sandbox-profile -o lowerdir=$etc/profile.d:/etc/profile.d /etc/profile.d
