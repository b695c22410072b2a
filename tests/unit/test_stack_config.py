"""Pure pieces of the local stack: generated configuration, pid handling, clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from aura.settings import Settings
from infra import stack


def test_kafka_properties_are_kraft_combined_mode_on_the_configured_ports(tmp_path):
    s = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093)
    props = dict(line.split("=", 1) for line in stack.kafka_properties(s, stack.Paths(tmp_path)).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data" / "kafka")
    assert props["offsets.topic.replication.factor"] == "1"


def test_cassandra_yaml_points_every_directory_into_the_data_dir(tmp_path):
    s = Settings(home=tmp_path, cassandra_port=19042, cassandra_storage_port=17000)
    text = stack.cassandra_yaml(s, stack.Paths(tmp_path))
    data = tmp_path / "data" / "cassandra"
    for key in ("commitlog_directory", "saved_caches_directory", "hints_directory", "cdc_raw_directory"):
        assert f"{key}: {data}/" in text
    assert "native_transport_port: 19042" in text
    assert "storage_port: 17000" in text
    assert "auto_snapshot: false" in text


def test_jvm_options_carry_the_java17_module_flags():
    flags = (stack.INFRA_DIR / "conf" / "cassandra-jvm17.options").read_text()
    for needed in ("--add-exports java.base/jdk.internal.misc=ALL-UNNAMED",
                   "--add-opens java.base/sun.nio.ch=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true"):
        assert needed in flags


def test_port_in_use_sees_a_listening_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert stack.port_in_use(port)
    assert not stack.port_in_use(port)


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = Settings(home=tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
        with pytest.raises(stack.StackError, match=f"port {port} is taken"):
            stack.up(s, services=("redis",))


def test_read_pid_ignores_dead_and_garbage_pid_files(tmp_path):
    paths = stack.Paths(tmp_path)
    paths.pid("kafka").parent.mkdir(parents=True)
    paths.pid("kafka").write_text("not a pid")
    assert stack.read_pid(paths, "kafka") is None
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    paths.pid("kafka").write_text(str(proc.pid))
    assert stack.read_pid(paths, "kafka") is None
    paths.pid("kafka").write_text(str(os.getpid()))
    assert stack.read_pid(paths, "kafka") == os.getpid()


def test_a_service_that_dies_on_start_reports_its_log_tail(tmp_path, monkeypatch):
    def start_broken(s, paths):
        paths.log("redis").parent.mkdir(parents=True, exist_ok=True)
        return stack._spawn(paths, "redis", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
                            cwd=tmp_path)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    monkeypatch.setitem(stack.SERVICE_TABLE, "redis",
                        stack.Service("redis", lambda s: s.redis_port, start_broken, lambda s: False))
    s = Settings(home=tmp_path, redis_url=f"redis://127.0.0.1:{free_port}/0", start_timeout_s=20)
    with pytest.raises(stack.StackError, match="redis died on start(.|\n)*boom: bad config"):
        stack.up(s, services=("redis",))


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    monkeypatch.setattr(stack.os, "geteuid", lambda: 1000)
    with pytest.raises(stack.StackError, match="missing openjdk-17-jdk-headless"):
        stack.java_major_version()
