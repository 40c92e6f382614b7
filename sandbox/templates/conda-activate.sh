# Run by `conda activate` for this environment (the sandbox's stand-in for a package's hook).
export NBMARKER_ACTIVATED=1
