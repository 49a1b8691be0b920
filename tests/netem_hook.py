"""Python side of tests/godot/link_cut.gd: a network link that silently drops every packet.

The hook creates a network namespace and a veth pair (root side 10.213.X.Y+1/30, namespace side
10.213.X.Y+2/30, X and Y from the test's port), publishes `netns` (1, or 0 when namespaces are
unavailable) and `srv_addr`, then waits for the scenario's `ready_to_cut`, adds
`tc qdisc ... netem loss 100%` on both ends and raises the flag `cut`. Everything is removed in a
`finally` once the processes are done.

The client process runs inside the namespace: its command line starts with `client_prefix()`,
which runs this file as `python3 tests/netem_hook.py exec SYNC_DIR NETNS -- godot ...`: it waits
for the hook's `netns` value, then execs `ip netns exec NETNS godot ...` (or plain `godot ...` when
the namespace could not be made, so the scenario can report its skip).

Without CAP_NET_ADMIN (`ip netns add` or the veth fails) the test fails with the reason when
CI=true and otherwise passes with a skip note.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from harness import Checks

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
TC = "/usr/sbin/tc" if os.path.exists("/usr/sbin/tc") else "tc"
HERE = os.path.abspath(__file__)


def names(port: int) -> tuple[str, str, str, str, str]:
    """(netns, root-side veth, netns-side veth, root address, netns address) for a test port."""
    n = port % 16384
    x, y = n >> 6, (n & 63) << 2
    return (f"rwsmp-lc-{port}", f"rwlc{port}a", f"rwlc{port}b",
            f"10.213.{x}.{y + 1}", f"10.213.{x}.{y + 2}")


def client_prefix(port: int, sync_dir: str) -> list[str]:
    return [sys.executable, HERE, "exec", sync_dir, names(port)[0], "--"]


def _exec_main(argv: list[str]) -> None:
    sync_dir, netns = argv[0], argv[1]
    cmd = argv[3:]  # after "--"
    path = os.path.join(sync_dir, "val_netns")
    end = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.02)
    try:
        with open(path) as f:
            have = f.read().strip() == "1"
    except OSError:
        have = False
    if have:
        os.execvp(IP, [IP, "netns", "exec", netns, *cmd])
    os.execvp(cmd[0], cmd)


def _run(*cmd: str) -> tuple[bool, str]:
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True)
    except OSError as e:  # no iproute2 (not Linux): reported as a failed setup step
        return False, str(e)
    return p.returncode == 0, (p.stderr or p.stdout).strip()


def _out(*cmd: str) -> str:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True).stdout
    except OSError:
        return ""


def link_cut_hook(ctx) -> list:
    netns, va, vb, addr_a, addr_b = names(ctx.port)
    checks = Checks()
    check = checks.check

    def cleanup() -> None:
        _run(IP, "link", "del", va)  # also removes the peer end
        _run(IP, "netns", "del", netns)

    cleanup()  # leftovers of an interrupted run with the same port
    try:
        steps = [
            (IP, "netns", "add", netns),
            (IP, "link", "add", va, "type", "veth", "peer", "name", vb),
            (IP, "link", "set", vb, "netns", netns),
            (IP, "addr", "add", addr_a + "/30", "dev", va),
            (IP, "link", "set", va, "up"),
            (IP, "netns", "exec", netns, IP, "addr", "add", addr_b + "/30", "dev", vb),
            (IP, "netns", "exec", netns, IP, "link", "set", vb, "up"),
            (IP, "netns", "exec", netns, IP, "link", "set", "lo", "up"),
        ]
        for step in steps:
            ok, err = _run(*step)
            if not ok:
                # No CAP_NET_ADMIN (a container without it can still `ip netns add`, but not
                # make the veth): a failure on CI, a skip elsewhere.
                ctx.put_value("netns", "0")
                msg = (f"`{' '.join(step)}` failed ({err}): this test needs CAP_NET_ADMIN "
                       f"(root, iproute2)")
                if os.environ.get("CI", "").lower() == "true":
                    check(False, "netns_setup", msg + "; CI=true, so this is a failure")
                else:
                    checks.info("link_cut_skip", "SKIPPED: " + msg)
                return checks
        ctx.put_value("srv_addr", f'"{addr_a}"')
        ctx.put_value("cli_addr", f'"{addr_b}"')
        ctx.put_value("netns", "1")
        ok = ctx.wait_flag("ready_to_cut", 25)
        if not check(ok, "ready_to_cut", "" if ok else "the scenario never asked for the cut"):
            return checks
        # netem loss 100% where the kernel has sch_netem; otherwise a FIFO of 0 packets, which
        # drops everything just as silently (no error reaches the sockets, TCP retransmits).
        qdisc = ["netem", "loss", "100%"]
        ok, err = _run(TC, "qdisc", "add", "dev", va, "root", *qdisc)
        if not ok and "unknown" in err.lower():
            qdisc = ["pfifo", "limit", "0"]
            ok, err = _run(TC, "qdisc", "add", "dev", va, "root", *qdisc)
        if check(ok, "qdisc_root_side", f"tc qdisc add dev {va} root {' '.join(qdisc)}: {err}"):
            ok, err = _run(IP, "netns", "exec", netns, TC, "qdisc", "add", "dev", vb, "root",
                           *qdisc)
            check(ok, "qdisc_netns_side", f"tc qdisc add dev {vb} root {' '.join(qdisc)}: {err}")
        if not ok:
            return checks
        ctx.flag("cut")
        ctx.wait_flag("never", 30)  # returns when the processes are done (ctx.stop)
        drops = []
        for pre in ([], [IP, "netns", "exec", netns]):
            dev = vb if pre else va
            p = _out(*pre, TC, "-s", "qdisc", "show", "dev", dev)
            m = re.search(r"dropped (\d+)", p)
            drops.append(int(m.group(1)) if m else -1)
        check(all(d > 0 for d in drops), "packets_dropped",
              f"qdisc drop counters {drops} (root side, netns side)")
        vals = {k: ctx.read_value(k).strip('"') for k in ("srv_detect_ms", "cli_detect_ms")}
        vals = {k: "-" if v == "?" else v for k, v in vals.items()}
        checks.info("link_cut", f"{' '.join(qdisc)} on both ends ({drops[0]}+{drops[1]} "
                    f"packets dropped); server dropped the client {vals['srv_detect_ms']} ms "
                    f"after the cut, the client found it gone {vals['cli_detect_ms']} ms after it")
    finally:
        cleanup()
        p = _out(IP, "netns", "list")
        left = netns in [ln.split()[0] for ln in p.splitlines() if ln.split()]
        ok, _ = _run(IP, "link", "show", va)
        check(not left and not ok, "netns_removed",
              f"netns {netns} left: {left}, veth {va} left: {ok}")
    return checks


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "exec":
    _exec_main(sys.argv[2:])
