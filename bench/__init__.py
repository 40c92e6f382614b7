"""nodebook benchmarks: `make bench` (bench/run.py); see docs/benchmarks.md."""
