"""Python's `websockets` (PyPI), the third-party client and server that some hooks test the
addon against: one pinned version, installed privately into the test cache by
tests/provision.py."""

from __future__ import annotations

import importlib
import sys

import provision

WEBSOCKETS = "websockets==15.0.1"


def provide(ctx) -> list:
    """Puts the pinned `websockets` on sys.path, then waits for the Godot side's "server_ready"
    flag. Returns [] when both happened, else the failed check that says which did not."""
    try:
        sys.path.insert(0, provision.python_package(WEBSOCKETS))
        for module in ["websockets.sync.client", "websockets.sync.server"]:
            importlib.import_module(module)  # fails here, with a reason, if pip did
    except Exception as e:  # pip or import failure: the test says why
        return [(False, "py.websockets", f"cannot provide {WEBSOCKETS}: {e}")]
    if not ctx.wait_flag("server_ready", 15):
        return [(False, "py.server_ready", "never flagged")]
    return []
