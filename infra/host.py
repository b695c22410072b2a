"""What the local stack needs from the host: its files, its prerequisites and its processes.

Owns the layout of ``Settings.home`` (``Paths``), the prerequisites the services run on (Debian
packages through apt-get, Java 17+, classpaths resolved by Maven into a local cache), and the
handling of the processes the stack starts (spawn with a pid file and a log, liveness, stop, reap).
Each service's own configuration lives in infra/services.py; the commands in infra/stack.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aura.errors import AuraError
from aura.settings import REPO_ROOT

INFRA_DIR = REPO_ROOT / "infra"


class StackError(AuraError, RuntimeError):
    """A service could not be prepared, started or reached; the message says what to do."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)  # noqa: T201 - the stack is a command-line tool


@dataclass(frozen=True)
class Paths:
    """Where the stack keeps its files under ``home``.

    ``m2/`` Maven repository, ``classpath/<component>.txt`` resolved classpaths, ``conf/<svc>/``
    generated configuration, ``data/<svc>/`` data (``reset`` wipes it), ``logs/<svc>.log`` process
    output, ``run/<svc>.pid`` the pid of each process the stack started.
    """

    home: Path
    maven_repo: Path | None = None

    @property
    def m2(self) -> Path:
        return self.maven_repo or self.home / "m2"

    def classpath(self, component: str) -> Path:
        return self.home / "classpath" / f"{component}.txt"

    def conf(self, service: str) -> Path:
        return self.home / "conf" / service

    def data(self, service: str) -> Path:
        return self.home / "data" / service

    def log(self, service: str) -> Path:
        return self.home / "logs" / f"{service}.log"

    def pid(self, service: str) -> Path:
        return self.home / "run" / f"{service}.pid"


# ---------------------------------------------------------------------------------------------
# prerequisites


def apt_install(*packages: str) -> None:
    """Install Debian packages (as root, after ``apt-get update``); raises StackError otherwise."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(f"missing {', '.join(packages)}: install with `sudo apt-get install -y {' '.join(packages)}`")
    say(f"installing {', '.join(packages)} from Debian (apt-get) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


def java_major_version() -> int:
    """Major version of the ``java`` on PATH (installed from Debian when missing and root)."""
    java = shutil.which("java")
    if java is None:
        apt_install("openjdk-17-jdk-headless")
        java = shutil.which("java")
    if java is None:
        raise StackError("Java is missing: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"cannot read the Java version from: {out.strip()!r}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def require_java17() -> None:
    major = java_major_version()
    if major < 17:
        raise StackError(f"Java {major} found; Kafka 4 and Cassandra 5 need Java 17 or newer")


def resolve_classpath(paths: Paths, component: str) -> str:
    """Classpath of ``component`` (kafka | cassandra), resolved by Maven into the local cache."""
    pom = INFRA_DIR / "maven" / f"{component}.pom.xml"
    out = paths.classpath(component)
    if out.exists() and out.stat().st_mtime >= pom.stat().st_mtime:
        cp = out.read_text().strip()
        if cp and all(Path(p).exists() for p in cp.split(os.pathsep)):
            return cp
    mvn = shutil.which("mvn")
    if mvn is None:
        apt_install("maven")
        mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven is missing: install it (Debian: apt-get install maven)")
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"resolving {component} from Maven Central (cached in {paths.m2}) ...")
    started = time.monotonic()
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath",
         f"-Dmdep.outputFile={out}", f"-Dmaven.repo.local={paths.m2}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"mvn could not resolve {component}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    say(f"resolved {component} in {time.monotonic() - started:.1f}s")
    return out.read_text().strip()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# ---------------------------------------------------------------------------------------------
# processes


def read_pid(paths: Paths, service: str) -> int | None:
    try:
        pid = int(paths.pid(service).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); look at its state
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def log_tail(paths: Paths, service: str, lines: int = 40) -> str:
    try:
        text = paths.log(service).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


def spawn(paths: Paths, service: str, argv: list[str], cwd: Path) -> int:
    """Start ``argv`` in its own session, output appended to the service's log; returns its pid."""
    paths.log(service).parent.mkdir(parents=True, exist_ok=True)
    paths.pid(service).parent.mkdir(parents=True, exist_ok=True)
    with open(paths.log(service), "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    paths.pid(service).write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group of ``pid``; SIGKILL it when it outlives ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
