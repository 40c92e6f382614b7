"""nodebook driver: one command from a laptop to Jupyter on a Slurm compute node."""

__version__ = "0.1.0"
