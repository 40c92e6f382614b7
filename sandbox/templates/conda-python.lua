help([[Python 3.11 for the sandbox cluster (no Jupyter: "setup" installs it).]])
whatis("Name: conda-python")
whatis("Version: 3.11")
prepend_path("PATH", "$prefix/bin")
