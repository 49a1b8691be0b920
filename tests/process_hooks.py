"""Python sides of the scenarios that watch or freeze the Godot processes themselves, by the pid
each publishes (`put_value("pid_<role>", ...)`): how fast a process exits after quit(), and
what its peers see while it is stopped with SIGSTOP.

    quit_live_<mode>  times the quitting process's exit (tests/godot/quit_live.gd)
    heartbeat         freezes a client or the server with SIGSTOP (tests/godot/heartbeat.gd)

Hooks of tests/suite.py's table: each takes a harness.Ctx and returns harness.Checks. Linux
only (/proc, SIGSTOP); heartbeat skips itself with a note elsewhere.
"""

from __future__ import annotations

import os
import platform
import signal
import time

from harness import Checks, Ctx, proc_state, process_gone
from wire_hooks import stalled_sockets


def _wait_exit(pid: int, limit: float) -> tuple[bool, float]:
    """(whether `pid` exited within `limit` seconds, seconds waited)."""
    t0 = time.monotonic()
    while not process_gone(pid) and time.monotonic() - t0 < limit:
        time.sleep(0.005)
    return process_gone(pid), time.monotonic() - t0


def quit_live_hook(ctx: Ctx) -> list:
    """tests/godot/quit_live.gd: the quitting process must exit < 2 s after calling quit()."""
    mode = ctx.args["mode"]
    checks = Checks()
    quitter = "client" if mode == "client_first" else "server"
    socks: list = []
    try:
        if mode == "pending":
            if not ctx.wait_flag("server_ready", 15):
                return [(False, "py.server_ready", "server never signalled server_ready")]
            socks += stalled_sockets(ctx.port)
            ctx.flag("raw_open")
        if not ctx.wait_flag("quitting_" + quitter, 25):
            return [(False, f"py.{quitter}_quit", f"the {quitter} never called quit()")]
        pid, why = ctx.godot_pid(quitter)
        if pid is None:
            return [(False, f"py.{quitter}_pid", why)]
        gone, took = _wait_exit(pid, 10)
        checks.check(gone and took < 2.0, f"{quitter}_exit_within_2s",
                     f"exited {took:.3f}s after quit()" if gone
                     else "still running 10s after quit()")
        checks.info(f"{quitter}_exit", f"{quitter} exited {took:.3f}s after quit()")
    finally:
        for s in socks:
            s.close()
    return checks


def heartbeat_hook(ctx: Ctx) -> list:
    """tests/godot/heartbeat.gd: freezes a process with SIGSTOP when the scenario asks (part a:
    the "frozen" client, part b: the server), tells it with a flag once the process is stopped,
    and resumes it (SIGCONT) once the other side has checked its detection. Part a also times
    the resumed client's exit."""
    parts = ctx.args["parts"]
    if platform.system() != "Linux" or not hasattr(signal, "SIGSTOP"):
        ctx.put_value("sigstop", 0)
        return [(True, "py.heartbeat_skip_info",
                 f"SKIPPED: freezing a process needs SIGSTOP and /proc (Linux); "
                 f"this is {platform.system()}")]
    ctx.put_value("sigstop", 1)
    checks = Checks()
    stopped: set[int] = set()

    def freeze(role: str) -> int | None:
        pid, why = ctx.godot_pid(role)
        if not checks.check(pid is not None, f"{role}_pid", why):
            return None
        os.kill(pid, signal.SIGSTOP)
        stopped.add(pid)
        end = time.monotonic() + 2
        while proc_state(pid) not in ("T", "t") and time.monotonic() < end:
            time.sleep(0.001)
        state = proc_state(pid)
        checks.check(state in ("T", "t"), f"{role}_stopped", f"/proc state {state!r} after SIGSTOP")
        return pid

    def resume(pid: int, flag_name: str) -> None:
        ctx.flag(flag_name)  # first, so the process sees it as soon as it runs again
        os.kill(pid, signal.SIGCONT)
        stopped.discard(pid)

    def freeze_part(part: str, role: str, who: str, asked: str, ask_wait: float, asker: str,
                    detector: str) -> tuple[int, float] | None:
        """When the scenario flags `asked`, freezes `role`'s process, flags `<who>_frozen`
        and holds it until the other side flags `<part>_detected`: (pid, seconds frozen)."""
        if not ctx.wait_flag(asked, ask_wait):
            checks.check(False, asked, f"the {asker} never asked")
            return None
        pid = freeze(role)
        if pid is None:
            return None
        t_stop = time.monotonic()
        ctx.flag(f"{who}_frozen")
        ok = ctx.wait_flag(f"{part}_detected", 10)
        checks.check(ok, f"{part}_detected", "" if ok else
                     f"the {detector} did not finish part {part} within 10 s of the freeze")
        held = time.monotonic() - t_stop
        resume(pid, f"{who}_resumed")
        return pid, held

    try:
        if "a" in parts:
            frozen = freeze_part("a", "frozen", "client", "freeze_client", 25, "server", "server")
            if frozen is None:
                return checks
            pid, held = frozen
            gone, took = _wait_exit(pid, 10)
            if not gone:
                os.kill(pid, signal.SIGKILL)
            checks.check(gone and took < 5.0, "a_frozen_client_exits_after_resume",
                         f"exited {took:.3f}s after SIGCONT" if gone
                         else "still running 10 s after SIGCONT (killed)")
            checks.info("a", f"a: server dropped the frozen client "
                        f"{ctx.read_value('a_detect_ms')} ms after the freeze "
                        f"(frozen {held:.2f}s, exited {took:.2f}s after SIGCONT)")
        if "b" in parts:
            frozen = freeze_part("b", "server", "server", "freeze_server", 30, "client", "client")
            if frozen is None:
                return checks
            checks.info("b", f"b: client saw server_disconnected "
                        f"{ctx.read_value('b_detect_ms')} ms after the server froze "
                        f"(frozen {frozen[1]:.2f}s)")
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    return checks
