"""Command-line interface (placeholder until the session driver lands)."""

import argparse


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run a subcommand."""
    parser = argparse.ArgumentParser(prog="python -m driver")
    parser.parse_args(argv)
    return 0
