#%Module1.0
# conda-python/3.11 for Environment Modules (profile modules); Lmod's twin is conda-python.lua.
proc ModulesHelp {} {
    puts stderr {Python 3.11 for the sandbox cluster (no Jupyter: "setup" installs it).}
}
module-whatis "Name: conda-python"
module-whatis "Version: 3.11"
prepend-path PATH $prefix/bin
