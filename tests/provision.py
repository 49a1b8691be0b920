#!/usr/bin/env python3
"""The programs the test suite runs (Godot, Chromium, nginx, HAProxy), provided without installing
anything system-wide, so that `python3 tests/run_tests.py` passes on a fresh Linux machine that
has only Rust and Python. Also LLVM 22's llvm-cov and llvm-profdata (from Debian unstable), which
`scripts/fuzz.py --coverage` needs and the tests do not.

For each program, in this order:
  1. its environment variable (`$GODOT`, `$CHROMIUM`, `$NGINX`, `$HAPROXY`), used as is;
  2. the command on `$PATH` (not for Godot: a `godot` there may be Godot 3);
  3. a private copy: Debian's package, downloaded with a private apt configuration (the machine's
     apt-get, no root needed) and unpacked with `dpkg -x` into `<cache>/<name>-<suite>/root`,
     where <cache> is `$RWSMP_CACHE` or `~/.cache/rust-websocket-godot`. A wrapper script
     `<cache>/<name>-<suite>/<name>` runs it. The first call downloads (a file lock keeps
     parallel tests from doing it twice); later calls find the wrapper and check it still runs.

Two kinds of private copy:
  - from the machine's own Debian release (Chromium, nginx, HAProxy): apt reads the machine's
    dpkg status, so only what the machine lacks is downloaded, and the wrapper runs the binary
    with the machine's libc and the root's libraries on LD_LIBRARY_PATH. (Running Chromium
    through a private loader would not work: it starts its helpers through /proc/self/exe.)
  - from Debian unstable (Godot 4.6, which needs a newer libc than Debian 12 has): every
    dependency is downloaded, libc included, and the wrapper runs the binary through the root's
    own dynamic loader (shared/DESIGN-NOTES.md section 3).

    python3 tests/provision.py [NAME...]   # provides them (default: the tests'), one path a line
    "$(python3 tests/provision.py nginx)" -v
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
MULTIARCH = "x86_64-linux-gnu"
LOADER = "ld-linux-x86-64.so.2"
LIB_DIRS = [f"usr/lib/{MULTIARCH}", f"lib/{MULTIARCH}", f"usr/lib/{MULTIARCH}/pulseaudio"]


@dataclass(frozen=True)
class Program:
    name: str
    env: str                   # environment variable naming a binary to use instead
    packages: tuple[str, ...]  # apt-get arguments; a pinned `pkg=version` gone from the suite
                               # falls back to the suite's current version
    exe: str                   # the binary, relative to the unpacked root
    check: tuple[str, ...]     # arguments with which it must exit 0
    suite: str | None = None   # None: the machine's own release; else e.g. "sid"
    on_path: bool = True       # whether a command of that name on $PATH is used


PROGRAMS = {p.name: p for p in [
    Program("godot", "GODOT", ("godot=4.6.3*",), "usr/bin/godot", ("--headless", "--version"),
            suite="sid", on_path=False),
    Program("chromium", "CHROMIUM", ("chromium",), "usr/lib/chromium/chromium", ("--version",)),
    Program("nginx", "NGINX", ("nginx",), "usr/sbin/nginx", ("-v",)),
    Program("haproxy", "HAPROXY", ("haproxy",), "usr/sbin/haproxy", ("-v",)),
    # Not for the tests: scripts/fuzz.py --coverage reads the nightly toolchain's coverage
    # profiles with it, which need the nightly's LLVM (22); llvm_profdata() comes with it.
    Program("llvm-cov", "LLVM_COV", ("llvm-22",), "usr/lib/llvm-22/bin/llvm-cov", ("--version",),
            suite="sid", on_path=False),
]}


def log(msg: str) -> None:
    print(f"[provision] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> str:
    env = os.environ.get("RWSMP_CACHE")
    if env:
        return os.path.abspath(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rust-websocket-godot")


def path(name: str) -> str:
    """The path of a command that behaves like `name` (a key of PROGRAMS), provided if needed.
    Raises RuntimeError (or CalledProcessError from apt-get) saying why there is none."""
    prog = PROGRAMS[name]
    env = os.environ.get(prog.env)
    if env:
        found = shutil.which(env) or env
        if not os.path.exists(found):
            raise RuntimeError(f"${prog.env}={env!r} does not exist")
        return found
    if prog.on_path and shutil.which(name):
        return shutil.which(name)
    return _provide(prog)


def llvm_profdata() -> str:
    """llvm-profdata of the same LLVM as path("llvm-cov"): `$LLVM_PROFDATA`, else the one next
    to `$LLVM_COV`, else a second wrapper into the root provided for llvm-cov."""
    env = os.environ.get("LLVM_PROFDATA")
    if env:
        return shutil.which(env) or env
    cov = path("llvm-cov")
    if os.environ.get("LLVM_COV"):
        return os.path.join(os.path.dirname(cov), os.path.basename(cov).replace("cov", "profdata"))
    prog = dataclasses.replace(PROGRAMS["llvm-cov"], name="llvm-profdata",
                               exe="usr/lib/llvm-22/bin/llvm-profdata")
    wrapper = os.path.join(os.path.dirname(cov), prog.name)
    if not _works(prog, wrapper):
        _write_wrapper(prog, wrapper, os.path.join(os.path.dirname(cov), "root"))
    return wrapper


def needs(*names: str):
    """Marks a test hook as needing these programs; provide_for() provides them up front."""
    def mark(hook):
        hook.programs = names
        return hook
    return mark


def provide_for(hooks) -> None:
    """Provides, before the tests start, what the given hooks need (see needs()): a first
    download inside a test would eat that test's time. A failure is only reported here; the
    hook fails later saying why."""
    wanted = sorted({n for h in hooks if h is not None for n in getattr(h, "programs", ())})
    for name in wanted:
        try:
            print(f"# {name}: {path(name)}", flush=True)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
            print(f"# warning: no {name}: {e}", flush=True)


def python_package(spec: str) -> str:
    """A PyPI package (`name==version`) installed with pip into `<cache>/pypi/<spec>`, once;
    returns the directory to put on sys.path. Used for third-party clients in the tests
    (Python's `websockets`)."""
    home = os.path.join(cache_dir(), "pypi", spec.replace("=", "-"))
    done = os.path.join(home, ".installed")
    if os.path.exists(done):
        return home
    os.makedirs(home, exist_ok=True)
    import fcntl  # Unix only, like the rest of the provisioning
    with open(os.path.join(home, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            log(f"pip install {spec} into {home}")
            _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "--no-warn-script-location", "--target", home, spec])
            with open(done, "w") as f:
                f.write(spec)
    return home


# --- the machine's Debian release and apt sources ---------------------------------------------

def _codename() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def _machine_sources() -> list[tuple[str, str]]:
    """(URI, suite) of the machine's apt entries for its own release (bookworm,
    bookworm-updates, bookworm-security...), from one-line and deb822 source files."""
    entries: list[tuple[str, str]] = []
    for file in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if file.endswith(".sources"):
            for stanza in text.split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        key, value = line.split(":", 1)
                        fields[key.strip().lower()] = value.split()
                if "deb" in fields.get("types", []):
                    entries += [(u, s) for u in fields.get("uris", [])
                                for s in fields.get("suites", [])]
        elif file.endswith(".list"):
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] == ["deb"]:
                    words = [w for w in words[1:] if "=" not in w and not w.startswith("[")
                             and not w.endswith("]")]
                    if len(words) >= 2:
                        entries.append((words[0], words[1]))
    code = _codename()
    return [(u.rstrip("/"), s) for u, s in entries
            if code and (s == code or s.startswith(code + "-"))]


def _sources_list(suite: str | None) -> str:
    machine = _machine_sources()
    if suite is None:
        code = _codename()
        if not machine and code:
            machine = [(DEFAULT_MIRROR, code), (DEFAULT_MIRROR, code + "-updates"),
                       (DEFAULT_SECURITY, code + "-security")]
        if not machine:
            raise RuntimeError("cannot tell this machine's Debian release (/etc/os-release)")
        return "".join(f"deb {u} {s} main\n" for u, s in machine)
    mirror = next((u for u, _ in machine if "debian" in u and "security" not in u),
                  DEFAULT_MIRROR)
    return f"deb {mirror} {suite} main\n"


# --- provisioning -----------------------------------------------------------------------------

def _works(prog: Program, wrapper: str) -> bool:
    if not (os.path.isfile(wrapper) and os.access(wrapper, os.X_OK)):
        return False
    try:
        return subprocess.run([wrapper, *prog.check], capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _suite(prog: Program) -> str:
    return prog.suite or _codename() or "machine"


def _provide(prog: Program) -> str:
    home = os.path.join(cache_dir(), f"{prog.name}-{_suite(prog)}")
    wrapper = os.path.join(home, prog.name)
    if _works(prog, wrapper):
        return wrapper
    import fcntl  # here: Windows has none, and needs $GODOT etc. anyway
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one provisioning at a time; the others then find it
        if _works(prog, wrapper):
            return wrapper
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise RuntimeError(f"apt-get/dpkg are unavailable to provide {prog.name}: set "
                               f"${prog.env} to a {prog.name} binary")
        _download_and_unpack(prog, home)
        _write_wrapper(prog, wrapper, os.path.join(home, "root"))
        if not _works(prog, wrapper):
            os.remove(wrapper)
            raise RuntimeError(f"the provided {prog.name} ({wrapper}) does not run")
        log(f"{prog.name} ready: {wrapper}")
        return wrapper


def _run(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(cmd))
    # apt's progress goes to stderr so that stdout stays clean for paths.
    subprocess.run(cmd, check=True, stdout=sys.stderr, **kw)


def _download_and_unpack(prog: Program, home: str) -> None:
    apt_dir = os.path.join(home, "apt")
    shutil.rmtree(apt_dir, ignore_errors=True)
    lists, archives = os.path.join(apt_dir, "lists"), os.path.join(apt_dir, "archives")
    os.makedirs(os.path.join(lists, "partial"))
    os.makedirs(os.path.join(archives, "partial"))
    if prog.suite is None:
        status = "/var/lib/dpkg/status"  # what the machine has is not downloaded
    else:
        status = os.path.join(apt_dir, "status")
        open(status, "w").close()  # empty: every dependency is downloaded
    sources = os.path.join(apt_dir, "sources.list")
    with open(sources, "w", encoding="utf-8") as f:
        f.write(_sources_list(prog.suite))
    opts = [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=/dev/null",
        "-o", f"Dir::State::Lists={lists}",
        "-o", f"Dir::State::status={status}",
        "-o", f"Dir::Cache::archives={archives}",
        "-o", f"Dir::Cache={apt_dir}",
        "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Install-Recommends=false",
        "-o", "APT::Install-Suggests=false",
        "-o", "APT::Sandbox::User=root",
    ]
    log(f"providing {prog.name} from Debian {_suite(prog)} into {home}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", *opts, "-q", "update"], env=env)
    try:
        _run(["apt-get", *opts, "-q", "-y", "-d", "install", *prog.packages], env=env)
    except subprocess.CalledProcessError:
        current = [p.split("=", 1)[0] for p in prog.packages]
        if current == list(prog.packages):
            raise
        log(f"{' '.join(prog.packages)} not in the suite any more; taking the current version")
        _run(["apt-get", *opts, "-q", "-y", "-d", "install", *current], env=env)
    debs = sorted(glob.glob(os.path.join(archives, "*.deb")))
    log(f"unpacking {len(debs)} packages")
    tmp_root = tempfile.mkdtemp(prefix="root.", dir=home)
    for deb in debs:
        subprocess.run(["dpkg", "-x", deb, tmp_root], check=True)
    if not os.path.exists(os.path.join(tmp_root, prog.exe)):
        shutil.rmtree(tmp_root)
        raise RuntimeError(f"the packages {' '.join(prog.packages)} have no {prog.exe}")
    root = os.path.join(home, "root")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp_root, root)
    # The archives and package lists are not needed once unpacked.
    shutil.rmtree(apt_dir, ignore_errors=True)


def _write_wrapper(prog: Program, wrapper: str, root: str) -> None:
    libs = ":".join(f"{root}/{d}" for d in LIB_DIRS)
    exe = f"{root}/{prog.exe}"
    if prog.suite is None:
        run = (f"export LD_LIBRARY_PATH='{libs}'${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\n"
               f"exec '{exe}' \"$@\"\n")
    else:
        loader = next(p for p in (f"{root}/usr/lib/{MULTIARCH}/{LOADER}",
                                  f"{root}/lib/{MULTIARCH}/{LOADER}") if os.path.exists(p))
        run = f"exec '{loader}' --library-path '{libs}' '{exe}' \"$@\"\n"
    tmp = wrapper + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("#!/bin/sh\n"
                f"# Generated by tests/provision.py: Debian {_suite(prog)}'s "
                f"{prog.name}, unpacked in a private root.\n" + run)
    os.chmod(tmp, 0o755)
    os.replace(tmp, wrapper)


def main(argv: list[str]) -> int:
    names = argv or [n for n in PROGRAMS if n != "llvm-cov"]  # the tests' programs
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown:
        log(f"unknown program(s) {' '.join(unknown)}; known: {' '.join(PROGRAMS)}")
        return 2
    status = 0
    for name in names:
        try:
            print(path(name), flush=True)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
            log(f"error: no {name}: {e}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
