# Run by `conda deactivate` for this environment.
unset NBMARKER_ACTIVATED
