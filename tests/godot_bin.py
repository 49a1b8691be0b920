#!/usr/bin/env python3
"""Locate (or provide) a Godot 4.3+ binary for the headless test harness, so that the test and
demo commands need no Godot installed.

``$GODOT`` if set (any Godot 4.3+ executable, used as is); otherwise Godot 4.6.3 from Debian
unstable, unpacked into the private cache and run through its own loader by tests/provision.py
(which also provides Chromium, nginx and HAProxy the same way). Progress goes to stderr; the
path is printed on stdout when run as a script::

    python3 tests/godot_bin.py            # prints the path of the godot command
    "$(python3 tests/godot_bin.py)" --headless --version
"""

from __future__ import annotations

import subprocess
import sys

import provision


def godot_path() -> str:
    """Path of an executable that behaves like the `godot` command."""
    return provision.path("godot")


def godot_version(path: str) -> str:
    out = subprocess.run([path, "--headless", "--version"], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> int:
    try:
        path = godot_path()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print(f"[godot_bin] error: {e}", file=sys.stderr, flush=True)
        return 1
    print(f"[godot_bin] version: {godot_version(path)}", file=sys.stderr, flush=True)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
