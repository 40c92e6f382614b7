"""A package index for the controller's side of an offline setup, built and served in a test.

`build_index(dir, wheel_dirs, extra)` makes a PEP 503 index (with each file's
data-requires-python, as PyPI serves it) over some wheel directories plus wheels made here;
`make_wheel` makes a minimal pure-Python wheel with a Requires-Python.
"""

from __future__ import annotations

import hashlib
import html
import re
import zipfile
from pathlib import Path


def make_wheel(directory: Path, name: str, version: str, requires_python: str) -> Path:
    """A minimal wheel: a module whose VERSION says which one was installed."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Requires-Python: {requires_python}\n"
        ),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: nodebook-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
        whl.writestr(f"{info}/RECORD", record)
    return wheel


def requires_python(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        for line in whl.read(meta).decode(errors="replace").splitlines():
            if line.startswith("Requires-Python:"):
                return line.split(":", 1)[1].strip()
            if not line.strip():
                break
    return ""


def build_index(root: Path, wheel_dirs: list[Path]) -> Path:
    """root/simple/<project>/index.html linking root/files/<wheel> (copied as hard links)."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[str]] = {}
    for directory in wheel_dirs:
        for wheel in sorted(directory.glob("*.whl")):
            target = files / wheel.name
            if not target.exists():
                target.write_bytes(wheel.read_bytes())
            name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
            sha = hashlib.sha256(target.read_bytes()).hexdigest()
            rp = requires_python(target)
            attr = f' data-requires-python="{html.escape(rp)}"' if rp else ""
            projects.setdefault(name, []).append(
                f'<a href="/files/{wheel.name}#sha256={sha}"{attr}>{wheel.name}</a><br>'
            )
    simple = root / "simple"
    for name, links in projects.items():
        (simple / name).mkdir(parents=True, exist_ok=True)
        (simple / name / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        )
    rows = "\n".join(f'<a href="/simple/{n}/">{n}</a><br>' for n in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{rows}\n</body></html>\n")
    return simple
