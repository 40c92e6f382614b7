"""The cluster's side of an offline install: run by nodebook_jupyter with the Python Jupyter's venv
is built on (the module's), so what it reports is exactly what pip there will accept.

    nodebook_wheels.py WHEEL_DIR REQUIREMENT...

prints one JSON object:
  version     "3.11.2": the exact Python version (pip download --python-version)
  implementation  "cp" (pip download --implementation)
  platforms   ["manylinux_2_36_x86_64", ..., "manylinux2014_x86_64", ..., "linux_x86_64"]: every
              platform tag this Python's pip installs wheels for (pip download --platform)
  wheels_ok   true when WHEEL_DIR already holds a complete upload for these requirements, this
              Python and these platforms (its nodebook-wheels.json, written by the role, lists
              each file and its size): then nothing needs to be downloaded again.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import sysconfig

MANIFEST = "nodebook-wheels.json"
# The old manylinux names and the glibc they stand for (PEP 600).
LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def platforms() -> list[str]:
    """The platform tags of this interpreter, most specific first (as packaging.tags has them)."""
    plat = sysconfig.get_platform()  # linux-x86_64, linux-aarch64, macosx-11.0-arm64 ...
    if not plat.startswith("linux-"):
        return [plat.replace("-", "_").replace(".", "_")]
    arch = plat.split("-", 1)[1].replace("-", "_").replace(".", "_")
    if arch == "x86_64" and sys.maxsize <= 2**32:  # a 32-bit Python on a 64-bit kernel
        arch = "i686"
    tags = []
    libc, version = platform.libc_ver()
    if libc == "glibc" and version:
        major, minor = (int(p) for p in version.split(".")[:2])
        for m in range(minor, 4, -1):
            tags.append(f"manylinux_{major}_{m}_{arch}")
            if (major, m) in LEGACY:
                tags.append(f"{LEGACY[(major, m)]}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def implementation() -> str:
    return {"cpython": "cp", "pypy": "pp"}.get(sys.implementation.name, sys.implementation.name)


def wheels_ok(directory: str, requirements: list[str], facts: dict[str, object]) -> bool:
    """The directory holds the upload these requirements need (per its manifest), complete."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    same = (
        sorted(manifest.get("requirements") or []) == sorted(requirements)
        and manifest.get("python_version") == facts["version"]
        and manifest.get("implementation") == facts["implementation"]
        and manifest.get("platforms") == facts["platforms"]
    )
    files = manifest.get("files")
    if not same or not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        try:
            if os.path.getsize(os.path.join(directory, os.path.basename(name))) != size:
                return False
        except OSError:
            return False
    return True


def main(argv: list[str]) -> dict[str, object]:
    facts: dict[str, object] = {
        "version": ".".join(str(part) for part in sys.version_info[:3]),
        "implementation": implementation(),
        "platforms": platforms(),
    }
    if argv:
        facts["wheels_ok"] = wheels_ok(argv[0], argv[1:], facts)
    return facts


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
