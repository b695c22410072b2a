"""Host prerequisites and build of the operator console (serving/console/, docs/console.md).

Node.js and npm come from Debian (apt-get, like redis-server in infra/stack.py) when ``node`` is
missing or older than the build tools need; the build is ``npm ci`` (the committed lock file) then
``npm run build`` into serving/console/dist, which the API serves at /console. Chromium for the
browser tests also comes from Debian (``chromium``): browser downloads by test tools are not
possible on every machine, and the distribution's build is the one CI has.

    python -m infra.console build [--if-missing]   # make console / make run
    python -m infra.console test                   # the JS component tests (vitest)
    python -m infra.console chromium               # print the path of a headless-capable chromium
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from infra.host import StackError, apt_install, say

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "serving" / "console"
DIST_INDEX = CONSOLE_DIR / "dist" / "index.html"
MIN_NODE_MAJOR = 18  # vite 6 and vitest 3 run on Node 18 (Debian 12's nodejs) and later
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    match = re.match(r"v(\d+)\.", out.strip())
    return int(match.group(1)) if match else 0


def ensure_node() -> tuple[str, str]:
    """Paths of ``node`` and ``npm``, installing Debian's nodejs and npm when missing or too old."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None or node_major(node) < MIN_NODE_MAJOR:
        apt_install("nodejs", "npm")
        node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise StackError("node and npm are missing after apt-get install nodejs npm")
    major = node_major(node)
    if major < MIN_NODE_MAJOR:
        raise StackError(f"Node.js {major} is too old for the console build (needs {MIN_NODE_MAJOR} or newer)")
    return node, npm


def _npm(npm: str, *args: str) -> None:
    say(f"npm {' '.join(args)} (serving/console) ...")
    env = {**os.environ, "npm_config_fund": "false", "npm_config_audit": "false",
           "npm_config_update_notifier": "false"}
    proc = subprocess.run([npm, *args], cwd=CONSOLE_DIR, env=env, check=False)  # noqa: S603 - our own npm
    if proc.returncode != 0:
        raise StackError(f"npm {' '.join(args)} failed in {CONSOLE_DIR} (exit {proc.returncode})")


def dependencies_current() -> bool:
    """node_modules was installed from the committed lock file (npm keeps a copy of it there)."""
    installed = CONSOLE_DIR / "node_modules" / ".package-lock.json"
    return installed.is_file() and installed.stat().st_mtime >= (CONSOLE_DIR / "package-lock.json").stat().st_mtime


def install_dependencies(npm: str) -> None:
    if not dependencies_current():
        _npm(npm, "ci")


def build(if_missing: bool = False) -> Path:
    """Build the console into serving/console/dist (``if_missing``: only when there is no build)."""
    if if_missing and DIST_INDEX.is_file():
        return DIST_INDEX.parent
    _, npm = ensure_node()
    install_dependencies(npm)
    _npm(npm, "run", "build")
    if not DIST_INDEX.is_file():
        raise StackError(f"the console build finished without {DIST_INDEX}")
    return DIST_INDEX.parent


def run_tests() -> None:
    _, npm = ensure_node()
    install_dependencies(npm)
    _npm(npm, "test")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    """The path of Debian's chromium, installed with apt-get when missing."""
    path = find_chromium()
    if path is None:
        apt_install("chromium")
        path = find_chromium()
    if path is None:
        raise StackError("chromium is missing after apt-get install chromium")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.console", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="npm ci + npm run build into serving/console/dist")
    b.add_argument("--if-missing", action="store_true", help="do nothing when a build exists")
    sub.add_parser("test", help="the console's component tests (vitest)")
    sub.add_parser("chromium", help="install Debian's chromium if missing and print its path")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            say(f"console built in {build(if_missing=args.if_missing)}")
        elif args.command == "test":
            run_tests()
        else:
            print(ensure_chromium())  # noqa: T201 - command-line tool
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
