"""nodebook-jupyter (roles/nodebook_remote/files/bin/) against a stand-in jupyterlab.

The stand-in has the shape the launcher relies on: `jupyterlab.commands._yarn_config`, called by
`jupyterlab.labapp` at import (as `get_app_version()` does) and again later, and a console script
that imports `main` from `jupyterlab.labapp`. Each call of the probe appends a line to a log, so
the tests see which calls ran. tests/e2e/test_jupyter_start.py checks the real JupyterLab.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from driver.paths import LAUNCHER

COMMANDS = """
import os
def _yarn_config(logger):
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(f"probe {logger}\\n")
    return {"yarn config": {"registry": "https://mirror.example"}, "npm config": {}}
"""

LABAPP = """
from jupyterlab import commands
AT_IMPORT = commands._yarn_config("import")["yarn config"]
def main():
    import sys
    later = commands._yarn_config("later")["yarn config"]
    print("argv", sys.argv[1:], "import", AT_IMPORT, "later", later)
    return 3
"""

SCRIPT = """#!/usr/bin/env python3
import sys
from jupyterlab.labapp import main
sys.exit(main())
"""


def stand_in(tmp_path: Path, *, probe: bool = True) -> Path:
    """A site dir with the stand-in jupyterlab and a bin dir with its console script."""
    pkg = tmp_path / "site" / "jupyterlab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    commands = COMMANDS if probe else COMMANDS.replace("_yarn_config", "_other_name")
    (pkg / "commands.py").write_text(commands)
    labapp = LABAPP if probe else LABAPP.replace("commands._yarn_config", "commands._other_name")
    (pkg / "labapp.py").write_text(labapp)
    script = tmp_path / "bin" / "jupyter-lab"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    return script


Launched = tuple[subprocess.CompletedProcess[str], list[str]]


def run(tmp_path: Path, argv: list[str]) -> Launched:
    """Run argv with the stand-in importable; its exit and the probe calls it logged."""
    log = tmp_path / "probe.log"
    log.write_text("")
    env = {"PYTHONPATH": str(tmp_path / "site"), "PROBE_LOG": str(log), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, log.read_text().splitlines()


def launch(tmp_path: Path, script: Path, *args: str) -> Launched:
    """The script started as the helper starts it: through the launcher."""
    return run(tmp_path, [sys.executable, str(LAUNCHER), str(script), *args])


def test_the_import_time_probe_is_skipped_and_later_calls_run(tmp_path: Path) -> None:
    script = stand_in(tmp_path)
    proc, probes = launch(tmp_path, script, "--ServerApp.sock=/x y", "--no-browser")
    # The import-time call got "no configuration"; the one after the import ran the real probe.
    assert probes == ["probe later"], proc.stderr
    assert proc.stdout.strip() == (
        "argv ['--ServerApp.sock=/x y', '--no-browser'] import {} "
        "later {'registry': 'https://mirror.example'}"
    )
    # The script's exit status is the launcher's.
    assert proc.returncode == 3


def test_without_the_launcher_the_probe_runs_at_import(tmp_path: Path) -> None:
    """The control: the stand-in really probes at import when started the usual way."""
    proc, probes = run(tmp_path, [sys.executable, str(stand_in(tmp_path))])
    assert proc.returncode == 3, proc.stderr
    assert probes == ["probe import", "probe later"]


def test_a_jupyterlab_without_the_probe_starts_unchanged(tmp_path: Path) -> None:
    script = stand_in(tmp_path, probe=False)
    proc, probes = launch(tmp_path, script, "--flag")
    assert proc.returncode == 3, proc.stderr
    assert probes == ["probe import", "probe later"]
    assert proc.stdout.startswith("argv ['--flag']")


def test_a_script_without_jupyterlab_starts_unchanged(tmp_path: Path) -> None:
    """The helper's unit tests run a stand-in server with no jupyterlab installed at all."""
    script = tmp_path / "jupyter-lab"
    script.write_text("import sys\nprint('ran', sys.argv[1:])\nsys.exit(4)\n")
    proc, probes = launch(tmp_path, script, "a", "b")
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.strip() == "ran ['a', 'b']" and probes == []


def test_no_script_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(LAUNCHER)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "usage: nodebook-jupyter" in proc.stderr
