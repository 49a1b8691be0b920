#!/usr/bin/env python3
"""Build and check the release zips: the addon (laid out for the Godot Asset Library) and the
demo project.

    python3 scripts/package_release.py            # build the Linux library, pack, check

writes into target/dist/ (or --out):

  rust_websocket-<version>.zip       addons/rust_websocket/ only: rust_websocket.gdextension,
                                     bin/ (the libraries), LICENSE, THIRD-PARTY-NOTICES,
                                     README.md (with the version), CHANGELOG.md, icon.svg
  rust_websocket-demo-<version>.zip  rust_websocket-demo-<version>/: the demo project
                                     (godot-project/, as committed) with the same addon inside
  RELEASE_NOTES.md                   the CHANGELOG section of this version (or [Unreleased])

and checks them, failing (exit status 1) on any problem:

- the license policy and THIRD-PARTY-NOTICES are current (tests/license_check.py);
- every library the .gdextension names that this machine can build (the host's, built here
  with `cargo build --release --locked -p rust_websocket`) is in the zip, and with
  --require-all every library the release ships (all it names but Linux arm64);
- the addon zip, unpacked into a fresh Godot project that holds nothing else, imports and
  runs a headless connect test: a server and a client of RustWebSocketMultiplayerPeer in one
  process reach CONNECTED and exchange a packet each way, and get_version() is the
  Cargo.toml version;
- the demo zip imports with the extension registered.

Godot comes from tests/godot_bin.py ($GODOT, or the cached Debian build). The release job
(.github/workflows/ci.yml) runs this with the other platforms' libraries:

    python3 scripts/package_release.py --no-build --bin-dir libs --require-all --tag v0.1.0

--tag refuses a tag that is not "v" + the Cargo.toml version, or whose version has no
CHANGELOG section.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import godot_bin  # noqa: E402
import license_check  # noqa: E402

ADDON = os.path.join(REPO, "addons", "rust_websocket")
ADDON_REL = "addons/rust_websocket"
GDEXT = "rust_websocket.gdextension"
CRATE = "rust_websocket"
# Files of the addon folder that go into the zip, besides bin/ (README.md gets the version).
ADDON_FILES = [GDEXT, "LICENSE", "THIRD-PARTY-NOTICES", "README.md", "icon.svg"]
# Named by the .gdextension but not built by the release workflow (see README "Platforms").
NOT_RELEASED = {"librust_websocket.linux.arm64.so"}
# (platform.system(), platform.machine()) -> (what cargo builds, the name in the .gdextension)
HOST_LIBRARY = {
    ("Linux", "x86_64"): ("librust_websocket.so", "librust_websocket.linux.x86_64.so"),
    ("Linux", "aarch64"): ("librust_websocket.so", "librust_websocket.linux.arm64.so"),
    ("Windows", "AMD64"): ("rust_websocket.dll", "rust_websocket.windows.x86_64.dll"),
}
# A target directory of its own: the release profile without debug info (as the release job
# builds) would otherwise rebuild target/release for everyone else each time.
TARGET_DIR = os.path.join(REPO, "target", "package")


def log(msg: str) -> None:
    print(msg, flush=True)


class Failure(Exception):
    pass


# ------------------------------------------------------------------------------------------
# Inputs

def cargo_version() -> str:
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def changelog_section(version: str, require: bool) -> str:
    with open(os.path.join(REPO, "CHANGELOG.md"), encoding="utf-8") as f:
        text = f.read()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    for want in ([f"[{version}]"] if require else [f"[{version}]", "[Unreleased]"]):
        for s in sections:
            if s.startswith(want):
                body = s.split("\n", 1)[1] if "\n" in s else ""
                body = re.split(r"^\[[^\]]+\]: ", body, flags=re.M)[0]  # link references
                return f"## {s.splitlines()[0]}\n{body.rstrip()}\n"
    raise Failure(f"CHANGELOG.md has no '## [{version}]' section"
                  + ("" if require else " and no '## [Unreleased]'"))


def gdextension_libraries() -> dict[str, str]:
    """feature tag (e.g. linux.release.x86_64) -> file name in bin/."""
    libs: dict[str, str] = {}
    section = ""
    with open(os.path.join(ADDON, GDEXT), encoding="utf-8") as f:
        for raw in f:
            line = raw.split(";", 1)[0].strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "libraries" and "=" in line:
                key, value = (p.strip() for p in line.split("=", 1))
                path = value.strip('"')
                prefix = f"res://{ADDON_REL}/bin/"
                if not path.startswith(prefix):
                    raise Failure(f"{GDEXT}: {key} points outside bin/: {path}")
                libs[key] = path[len(prefix):]
    if not libs:
        raise Failure(f"{GDEXT} names no libraries")
    return libs


def build_host_library() -> tuple[str, str]:
    """Builds the host's library in release mode; returns (path, name in the .gdextension)."""
    key = (platform.system(), platform.machine())
    if key not in HOST_LIBRARY:
        raise Failure(f"no release library is built on {key[0]} {key[1]} (a macOS zip needs "
                      "the universal library the release job makes with lipo): use --no-build "
                      "--bin-dir")
    built, name = HOST_LIBRARY[key]
    env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG="false",
               CARGO_PROFILE_RELEASE_STRIP="debuginfo", CARGO_TARGET_DIR=TARGET_DIR)
    cmd = ["cargo", "build", "--release", "--locked", "-p", CRATE]
    log(f"$ {' '.join(cmd)}  (CARGO_TARGET_DIR=target/package, no debug info)")
    start = time.monotonic()
    if subprocess.run(cmd, cwd=REPO, env=env).returncode != 0:
        raise Failure("cargo build failed")
    path = os.path.join(TARGET_DIR, "release", built)
    if not os.path.isfile(path):
        raise Failure(f"{path} was not built")
    log(f"built {name} ({os.path.getsize(path) / 1e6:.1f} MB) in {time.monotonic() - start:.0f} s")
    return path, name


# ------------------------------------------------------------------------------------------
# Packing

def stage_addon(dest: str, libs: dict[str, str], version: str) -> None:
    """Copies the addon into dest/addons/rust_websocket with the given bin/ files."""
    out = os.path.join(dest, ADDON_REL)
    os.makedirs(os.path.join(out, "bin"))
    for name in ADDON_FILES:
        src = os.path.join(ADDON, name)
        if not os.path.isfile(src):
            raise Failure(f"{ADDON_REL}/{name} is missing")
        if name == "README.md":
            with open(src, encoding="utf-8") as f:
                lines = f.read().split("\n")
            lines[1:1] = ["", f"Version {version}."]
            with open(os.path.join(out, name), "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
        else:
            shutil.copy2(src, os.path.join(out, name))
    shutil.copy2(os.path.join(REPO, "CHANGELOG.md"), os.path.join(out, "CHANGELOG.md"))
    for name, src in sorted(libs.items()):
        shutil.copy2(src, os.path.join(out, "bin", name))


def write_zip(zip_path: str, root: str) -> None:
    """Zips everything under root, paths relative to it, in sorted order, with Unix modes."""
    entries = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(d, root).replace(os.sep, "/")
        if rel != ".":
            entries.append((rel + "/", d))
        entries += [((f if rel == "." else f"{rel}/{f}"), os.path.join(d, f)) for f in sorted(files)]
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for arc, path in entries:
            info = zipfile.ZipInfo(arc, date_time=(2026, 1, 1, 0, 0, 0))
            if arc.endswith("/"):
                info.external_attr = (0o40755 << 16) | 0x10
                z.writestr(info, b"")
            else:
                mode = 0o755 if arc.endswith((".so", ".dylib", ".dll")) else 0o644
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(path, "rb") as f:
                    z.writestr(info, f.read())


def demo_files() -> list[str]:
    """The demo project's committed files (nothing a local run left behind)."""
    out = subprocess.run(["git", "ls-files", "-z", "godot-project"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    # .gitignore is the repository's (it ignores the addon, which the zip carries).
    files = [f for f in out.split("\0") if f and os.path.basename(f) != ".gitignore"]
    if not any(f == "godot-project/project.godot" for f in files):
        raise Failure("git ls-files finds no godot-project/project.godot")
    return files


DEMO_README = """\
rust_websocket demo {version}
=======================

A Godot project with the rust_websocket addon (addons/rust_websocket/, version {version})
and its two demos. Open this folder in Godot 4.3 or newer and press F5: the arena demo
(demo/arena.tscn) starts; press Host in one window and Join in another (Debug > Customize
Run Instances starts several). demo/demo.tscn is a chat over RPCs.

A dedicated headless server:
    godot --headless --path . res://demo/arena.tscn -- --server --port=9080

web/ is a browser client (plain JavaScript) for the addon's raw mode; see web/README.md.
The addon's licenses: addons/rust_websocket/LICENSE and THIRD-PARTY-NOTICES.
"""


def stage_demo(dest: str, addon_stage: str, version: str) -> str:
    top = os.path.join(dest, f"rust_websocket-demo-{version}")
    for rel in demo_files():
        target = os.path.join(top, os.path.relpath(rel, "godot-project"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), target)
    shutil.copytree(os.path.join(addon_stage, ADDON_REL), os.path.join(top, ADDON_REL))
    with open(os.path.join(top, "README.txt"), "w", encoding="utf-8") as f:
        f.write(DEMO_README.format(version=version))
    return top


# ------------------------------------------------------------------------------------------
# Checks

# The headless connect test run in a fresh project holding only the unpacked addon zip.
CONNECT_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "release_connect_test.gd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def godot_import(godot: str, project: str) -> None:
    """`godot --headless --import`, again if a first import crashes at exit (a Godot bug,
    godotengine/godot#123511, as tests/run_demo.py does); then the extension must be listed."""
    for attempt in (1, 2, 3):
        proc = subprocess.run([godot, "--headless", "--path", project, "--import"],
                              capture_output=True, text=True, errors="replace", timeout=300,
                              stdin=subprocess.DEVNULL)
        if proc.returncode == 0:
            break
        log(f"  godot --import exit code {proc.returncode} (attempt {attempt})")
    else:
        raise Failure("godot --import failed 3 times:\n" + "\n".join(
            (proc.stdout + proc.stderr).splitlines()[-20:]))
    ext_list = os.path.join(project, ".godot", "extension_list.cfg")
    try:
        with open(ext_list, encoding="utf-8") as f:
            listed = f.read()
    except FileNotFoundError:
        raise Failure("godot --import wrote no .godot/extension_list.cfg") from None
    if f"res://{ADDON_REL}/{GDEXT}" not in listed:
        raise Failure(f"the import did not register the extension: {listed!r}")


def check_addon_zip(zip_path: str, libs: dict[str, str], required: set[str]) -> None:
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        outside = [n for n in names if not n.startswith(ADDON_REL + "/")
                   and n not in ("addons/",)]
        if outside:
            raise Failure(f"entries outside {ADDON_REL}/: {outside}")
        for f in ADDON_FILES + ["CHANGELOG.md"]:
            if f"{ADDON_REL}/{f}" not in names:
                raise Failure(f"{ADDON_REL}/{f} is not in the zip")
        with open(os.path.join(ADDON, GDEXT), "rb") as f:
            if z.read(f"{ADDON_REL}/{GDEXT}") != f.read():
                raise Failure(f"the zip's {GDEXT} differs from the repository's")
        present = {n.rsplit("/", 1)[1] for n in names
                   if n.startswith(f"{ADDON_REL}/bin/") and not n.endswith("/")
                   and z.getinfo(n).file_size > 0}
    missing = sorted(required - present)
    if missing:
        raise Failure(f"libraries missing from bin/: {', '.join(missing)}")
    log("libraries named by the .gdextension:")
    for name in sorted(set(libs.values())):
        tags = ", ".join(sorted(k for k, v in libs.items() if v == name))
        state = "in the zip" if name in present else (
            "not built here (release job only)" if name not in NOT_RELEASED
            else "not shipped (build it yourself)")
        log(f"  {name:45s} {state}  [{tags}]")
    extra = sorted(present - set(libs.values()))
    if extra:
        raise Failure(f"bin/ has libraries the .gdextension does not name: {extra}")


def connect_test(godot: str, zip_path: str, version: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rwsmp-zipcheck-") as project:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(project)
        with open(os.path.join(project, "project.godot"), "w", encoding="utf-8") as f:
            f.write('config_version=5\n\n[application]\n\nconfig/name="rust_websocket zip check"\n'
                    "run/flush_stdout_on_print=true\n")
        shutil.copyfile(CONNECT_TEST, os.path.join(project, "connect_test.gd"))
        log(f"unpacked {os.path.basename(zip_path)} into a fresh project {project}; importing")
        godot_import(godot, project)
        port = free_port()
        cmd = [godot, "--headless", "--path", project, "--script", "res://connect_test.gd",
               "--", f"--port={port}", f"--version={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=60, stdin=subprocess.DEVNULL)
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            output, rc = (e.stdout or b"").decode(errors="replace"), "timeout"
        for line in output.splitlines():
            if line.startswith("ZIPCHECK"):
                log(f"  {line}")
        if rc != 0 or "ZIPCHECK OK" not in output.splitlines():
            raise Failure(f"connect test failed (exit {rc}):\n"
                          + "\n".join(output.splitlines()[-30:]))


def check_demo_zip(godot: str, zip_path: str, top: str) -> None:
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        bad = [n for n in names if not n.startswith(top + "/")]
        if bad:
            raise Failure(f"demo zip entries outside {top}/: {bad[:5]}")
        for need in ("project.godot", "demo/arena.tscn", f"{ADDON_REL}/{GDEXT}",
                     f"{ADDON_REL}/LICENSE", f"{ADDON_REL}/THIRD-PARTY-NOTICES"):
            if f"{top}/{need}" not in names:
                raise Failure(f"{need} is not in the demo zip")
        with tempfile.TemporaryDirectory(prefix="rwsmp-democheck-") as d:
            z.extractall(d)
            log(f"unpacked {os.path.basename(zip_path)}; importing the demo project")
            godot_import(godot, os.path.join(d, top))


# ------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "target", "dist"),
                    help="output folder (default target/dist)")
    ap.add_argument("--bin-dir", help="more libraries, named as in the .gdextension")
    ap.add_argument("--no-build", action="store_true",
                    help="do not build the host library (take it from --bin-dir)")
    ap.add_argument("--require-all", action="store_true",
                    help="every library the release ships must be present")
    ap.add_argument("--tag", help="the release tag (vX.Y.Z): must match Cargo.toml and "
                    "have a CHANGELOG section")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the Godot import and connect checks")
    args = ap.parse_args(argv)

    try:
        version = cargo_version()
        if args.tag and args.tag != f"v{version}":
            raise Failure(f"tag {args.tag} does not match the Cargo.toml version {version} "
                          f"(expected v{version})")
        notes = changelog_section(version, require=bool(args.tag))
        log(f"rust_websocket {version}")

        log("== license policy and notices (tests/license_check.py)")
        problems = license_check.run_check(quiet=True)
        if problems:
            raise Failure("license check: " + "; ".join(problems)
                          + f"\n  regenerate the notices: {license_check.REGENERATE}")
        log("license check: OK")

        named = gdextension_libraries()
        libs: dict[str, str] = {}  # name in bin/ -> path
        if args.bin_dir:
            for name in sorted(os.listdir(args.bin_dir)):
                if name in named.values():
                    libs[name] = os.path.join(args.bin_dir, name)
                else:
                    log(f"  ignoring {name} in {args.bin_dir}: not named by the .gdextension")
        required: set[str] = set()
        if not args.no_build:
            log("== build")
            path, name = build_host_library()
            libs[name] = path
            required.add(name)
        if args.require_all:
            required |= set(named.values()) - NOT_RELEASED
        if not libs:
            raise Failure("no library to pack")

        os.makedirs(args.out, exist_ok=True)
        addon_zip = os.path.join(args.out, f"rust_websocket-{version}.zip")
        demo_zip = os.path.join(args.out, f"rust_websocket-demo-{version}.zip")
        with tempfile.TemporaryDirectory(prefix="rwsmp-stage-") as stage:
            addon_stage = os.path.join(stage, "addon")
            stage_addon(addon_stage, libs, version)
            write_zip(addon_zip, addon_stage)
            demo_stage = os.path.join(stage, "demo")
            stage_demo(demo_stage, addon_stage, version)
            write_zip(demo_zip, demo_stage)
        with open(os.path.join(args.out, "RELEASE_NOTES.md"), "w", encoding="utf-8") as f:
            f.write(notes)

        log(f"== {os.path.relpath(addon_zip, REPO)}")
        with zipfile.ZipFile(addon_zip) as z:
            for info in z.infolist():
                if not info.is_dir():
                    log(f"  {info.file_size:>10}  {info.filename}")
        log(f"== {os.path.relpath(demo_zip, REPO)}: "
            f"{len(zipfile.ZipFile(demo_zip).namelist())} entries, "
            f"{os.path.getsize(demo_zip) / 1e6:.1f} MB")

        log("== check")
        check_addon_zip(addon_zip, named, required)
        if args.no_check:
            log("Godot checks skipped (--no-check)")
        else:
            godot = godot_bin.godot_path()
            log(f"godot: {godot} ({godot_bin.godot_version(godot)})")
            connect_test(godot, addon_zip, version)
            check_demo_zip(godot, demo_zip, f"rust_websocket-demo-{version}")
        log(f"OK: {os.path.relpath(addon_zip, REPO)}, {os.path.relpath(demo_zip, REPO)}")
        return 0
    except Failure as e:
        log(f"FAILED: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
