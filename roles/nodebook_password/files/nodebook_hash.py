"""Hash Jupyter's password (argon2), or keep the stored hash: run by the nodebook_password role.

Reads the password from stdin (never argv) and the config file named in argv[1]; prints
{"hash": ..., "changed": bool}: the stored hash when the password is empty or matches it
(passwd_check), otherwise a fresh argon2 hash from jupyter_server.auth.passwd.
"""

from __future__ import annotations

import json
import os
import sys


def stored_hash(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        try:
            return str(json.load(f).get("PasswordIdentityProvider", {}).get("hashed_password", ""))
        except (ValueError, AttributeError):
            return ""


def main(path: str, password: str) -> dict[str, object]:
    from jupyter_server.auth import passwd, passwd_check

    stored = stored_hash(path)
    if not password or (stored and passwd_check(stored, password)):
        return {"hash": stored, "changed": False}
    return {"hash": passwd(password, algorithm="argon2"), "changed": True}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.stdin.read())))
