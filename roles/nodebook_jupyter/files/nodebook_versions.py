"""Which pinned requirements are installed: run by the nodebook_jupyter role with Jupyter's Python.

Given requirement strings in argv, prints {"installed": {name: version|null}, "missing": [req]}:
a requirement is missing when its distribution is absent or differs from its == pin.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata


def main(requirements: list[str]) -> dict[str, object]:
    installed: dict[str, str | None] = {}
    missing = []
    for req in requirements:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        pin = re.search(r"==\s*([^;,\s]+)", req)
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
        if installed[name] is None or (pin and installed[name] != pin.group(1)):
            missing.append(req)
    return {"installed": installed, "missing": missing}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
