"""The local stack without Docker: Kafka (KRaft, one node), Cassandra (one node) and Redis.

Kafka and Cassandra are resolved from Maven Central by ``mvn`` (poms in infra/maven/, artifacts in
a git-ignored cache under ``Settings.home``) and run as JVM processes; Redis is Debian's
redis-server (installed with apt-get when missing; one already answering on the port is reused).
This module owns their processes, configuration files, data and logs under ``Settings.home``:

    .aura/m2/            Maven repository (reused by later runs)
    .aura/classpath/     resolved classpaths, one file per component
    .aura/conf/          generated server.properties, cassandra.yaml
    .aura/data/<svc>/    data directories (``reset`` wipes them)
    .aura/logs/<svc>.log process output
    .aura/run/<svc>.pid  pid of each process we started
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aura.settings import REPO_ROOT, Settings

INFRA_DIR = REPO_ROOT / "infra"
SERVICES = ("kafka", "cassandra", "redis")


class StackError(RuntimeError):
    """A service could not be prepared, started or reached; the message says what to do."""


def _say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)  # noqa: T201 - this module is a command-line tool


@dataclass(frozen=True)
class Paths:
    """Where the stack keeps its files."""

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
    _say(f"installing {', '.join(packages)} from Debian (apt-get) ...")
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
    _say(f"resolving {component} from Maven Central (cached in {paths.m2}) ...")
    started = time.monotonic()
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath",
         f"-Dmdep.outputFile={out}", f"-Dmaven.repo.local={paths.m2}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"mvn could not resolve {component}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    _say(f"resolved {component} in {time.monotonic() - started:.1f}s")
    return out.read_text().strip()


def ensure_redis_server() -> str:
    """Path of redis-server, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return found


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


def _spawn(paths: Paths, service: str, argv: list[str], cwd: Path) -> int:
    paths.log(service).parent.mkdir(parents=True, exist_ok=True)
    paths.pid(service).parent.mkdir(parents=True, exist_ok=True)
    with open(paths.log(service), "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service}\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv built from our own configuration
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    paths.pid(service).write_text(str(proc.pid))
    return proc.pid


def _stop_pid(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------------------------------------
# Kafka


def kafka_properties(s: Settings, paths: Paths) -> str:
    host, port, cport = s.kafka_host, s.kafka_port, s.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{cport}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.data('kafka')}",
        f"num.partitions={s.topic_partitions}",
        "num.network.threads=2",
        "num.io.threads=4",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "min.insync.replicas=1",
        "default.replication.factor=1",
        "group.initial.rebalance.delay.ms=0",
        # a loaded 2-core machine can stall the JVM for seconds: don't fence the only broker for it
        "broker.session.timeout.ms=30000",
        "broker.heartbeat.interval.ms=2000",
        "auto.create.topics.enable=true",
        "log.retention.hours=168",
        "log.segment.bytes=268435456",
        "message.max.bytes=4194304",
        "",
    ])


def start_kafka(s: Settings, paths: Paths) -> int:
    cp = resolve_classpath(paths, "kafka")
    conf = paths.conf("kafka")
    conf.mkdir(parents=True, exist_ok=True)
    props = conf / "server.properties"
    props.write_text(kafka_properties(s, paths))
    data = paths.data("kafka")
    data.mkdir(parents=True, exist_ok=True)
    base = ["java", f"-Xms{s.kafka_heap}", f"-Xmx{s.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-Djava.awt.headless=true", "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile={INFRA_DIR / 'conf' / 'kafka-log4j2.properties'}", "-cp", cp]
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id.startswith("-"):
            cluster_id = "A" + cluster_id[1:]
        proc = subprocess.run(
            [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "-g"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return _spawn(paths, "kafka", [*base, "kafka.Kafka", str(props)], cwd=conf)


def kafka_ready(s: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    # log_level 0: a broker that is still starting is expected, not worth a line per attempt
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        md = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    return bool(md.brokers)


# ---------------------------------------------------------------------------------------------
# Cassandra


def cassandra_yaml(s: Settings, paths: Paths) -> str:
    data = paths.data("cassandra")
    host = s.cassandra_host_list[0]
    return f"""# generated by infra/stack.py
cluster_name: aura
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
# group commit: a write is acknowledged once its group (<= 10 ms) is fsynced. Periodic sync would
# acknowledge writes that a kill -9 then loses: replay stops at the last sync marker.
commitlog_sync: group
commitlog_sync_group_window: 10ms
commitlog_segment_size: 32MiB
commitlog_directory: {data}/commitlog
data_file_directories:
  - {data}/data
saved_caches_directory: {data}/saved_caches
hints_directory: {data}/hints
cdc_raw_directory: {data}/cdc_raw
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{s.cassandra_storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {s.cassandra_storage_port}
native_transport_port: {s.cassandra_port}
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
snapshot_before_compaction: false
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 32MiB
disk_failure_policy: stop
commit_failure_policy: stop
read_request_timeout: 5000ms
write_request_timeout: 5000ms
range_request_timeout: 10000ms
request_timeout: 10000ms
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB
"""


def start_cassandra(s: Settings, paths: Paths) -> int:
    cp = resolve_classpath(paths, "cassandra")
    conf = paths.conf("cassandra")
    conf.mkdir(parents=True, exist_ok=True)
    yaml = conf / "cassandra.yaml"
    yaml.write_text(cassandra_yaml(s, paths))
    data = paths.data("cassandra")
    data.mkdir(parents=True, exist_ok=True)
    flags = [
        line.strip() for line in (INFRA_DIR / "conf" / "cassandra-jvm17.options").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    argv = ["java", f"-Xms{s.cassandra_heap}", f"-Xmx{s.cassandra_heap}"]
    for flag in flags:
        argv.extend(flag.split(" ", 1))
    argv += [
        f"-Dcassandra.config={yaml.as_uri()}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={paths.log('cassandra').parent}",
        f"-Dlogback.configurationFile={INFRA_DIR / 'conf' / 'cassandra-logback.xml'}",
        "-cp", cp, "org.apache.cassandra.service.CassandraDaemon",
    ]
    return _spawn(paths, "cassandra", argv, cwd=conf)


def cassandra_ready(s: Settings) -> bool:
    import logging

    from aura.bootstrap import cassandra_cluster

    logging.getLogger("cassandra").setLevel(logging.CRITICAL)  # refused connections while starting
    cluster = cassandra_cluster(s, request_timeout=5, connect_timeout=2)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return row is not None
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------------------------------------
# Redis


def start_redis(s: Settings, paths: Paths) -> int:
    binary = ensure_redis_server()
    data = paths.data("redis")
    data.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(s.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "yes", "--maxclients", "10000"]
    return _spawn(paths, "redis", argv, cwd=data)


def redis_ready(s: Settings) -> bool:
    import redis

    client = redis.Redis.from_url(s.redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# commands


@dataclass(frozen=True)
class Service:
    name: str
    port: Callable[[Settings], int]
    start: Callable[[Settings, Paths], int]
    ready: Callable[[Settings], bool]


SERVICE_TABLE: dict[str, Service] = {
    "kafka": Service("kafka", lambda s: s.kafka_port, start_kafka, kafka_ready),
    "cassandra": Service("cassandra", lambda s: s.cassandra_port, start_cassandra, cassandra_ready),
    "redis": Service("redis", lambda s: s.redis_port, start_redis, redis_ready),
}


def up(s: Settings, services: tuple[str, ...] = SERVICES) -> dict[str, float]:
    """Start what is not running and wait until each service answers; idempotent.

    Returns the seconds each service took to become ready (0.0 when it already was).
    """
    paths = Paths(s.home, s.maven_repo)
    if any(name in ("kafka", "cassandra") for name in services):
        require_java17()
    started_at = time.monotonic()
    pending: dict[str, int | None] = {}
    began: dict[str, float] = {}
    for name in services:
        began[name] = time.monotonic()
        svc = SERVICE_TABLE[name]
        pid = read_pid(paths, name)
        if pid is not None:
            pending[name] = pid
            continue
        if port_in_use(svc.port(s)):
            if svc.ready(s):
                if name == "redis":
                    _say(f"redis: reusing the server already answering on port {svc.port(s)}")
                    pending[name] = None
                    continue
                raise StackError(
                    f"{name}: port {svc.port(s)} answers but not from a process this stack started "
                    f"(pid file {paths.pid(name)} missing); stop it or set another port")
            raise StackError(f"{name}: port {svc.port(s)} is taken by another process; free it or "
                             "configure another port (see README, Configuration)")
        began[name] = time.monotonic()
        pending[name] = svc.start(s, paths)
        _say(f"{name}: started (pid {pending[name]}), log {paths.log(name)}")
    timings: dict[str, float] = {}
    deadline = started_at + s.start_timeout_s
    waiting = dict(pending)
    while waiting:
        for name in list(waiting):
            pid = waiting[name]
            if SERVICE_TABLE[name].ready(s):
                timings[name] = time.monotonic() - began[name]
                _say(f"{name}: ready in {timings[name]:.1f}s")
                del waiting[name]
            elif pid is not None and not pid_alive(pid):
                _reap(pid)
                raise StackError(f"{name} died on start; last lines of {paths.log(name)}:\n"
                                 f"{log_tail(paths, name)}")
        if waiting and time.monotonic() > deadline:
            names = ", ".join(waiting)
            tails = "\n".join(f"--- {n}:\n{log_tail(paths, n, 20)}" for n in waiting)
            raise StackError(f"not ready after {s.start_timeout_s:.0f}s: {names}\n{tails}")
        if waiting:
            time.sleep(0.5)
    return timings


def down(s: Settings, services: tuple[str, ...] = SERVICES) -> None:
    """Stop every process this stack started (SIGTERM, then SIGKILL after a grace period)."""
    paths = Paths(s.home, s.maven_repo)
    for name in services:
        pid = read_pid(paths, name)
        if pid is None:
            paths.pid(name).unlink(missing_ok=True)
            continue
        _say(f"{name}: stopping pid {pid}")
        _stop_pid(pid, timeout_s=30.0)
        paths.pid(name).unlink(missing_ok=True)


def kill(s: Settings, service: str) -> None:
    """SIGKILL one service (crash simulation for recovery tests)."""
    paths = Paths(s.home, s.maven_repo)
    pid = read_pid(paths, service)
    if pid is None:
        raise StackError(f"{service} is not running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)


def status(s: Settings) -> dict[str, dict[str, object]]:
    paths = Paths(s.home, s.maven_repo)
    report: dict[str, dict[str, object]] = {}
    for name, svc in SERVICE_TABLE.items():
        pid = read_pid(paths, name)
        report[name] = {"pid": pid, "port": svc.port(s), "answers": svc.ready(s), "log": str(paths.log(name))}
    return report


def reset(s: Settings) -> None:
    """Stop the stack and wipe its data (the Maven cache stays)."""
    down(s)
    paths = Paths(s.home, s.maven_repo)
    for name in SERVICES:
        shutil.rmtree(paths.data(name), ignore_errors=True)
    _say(f"data wiped under {paths.home / 'data'}")


def main(argv: list[str]) -> int:
    from aura.settings import get_settings

    s = get_settings()
    cmd = argv[0] if argv else "status"
    try:
        if cmd == "up":
            timings = up(s)
            _say("all services ready: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
            _say(f"logs: {Paths(s.home, s.maven_repo).home / 'logs'}")
        elif cmd == "down":
            down(s)
        elif cmd == "reset":
            reset(s)
        elif cmd == "status":
            for name, info in status(s).items():
                state = "up" if info["answers"] else "down"
                _say(f"{name:<10} {state:<5} pid={info['pid']} port={info['port']} log={info['log']}")
        else:
            _say(f"unknown command {cmd!r}; use up | down | status | reset")
            return 2
    except StackError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
