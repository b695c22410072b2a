"""The host side of the local stack: ports, pid files, clear errors for missing prerequisites."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from infra import host


def test_port_in_use_sees_a_listening_socket():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert host.port_in_use(port)
    assert not host.port_in_use(port)


def test_read_pid_ignores_dead_and_garbage_pid_files(tmp_path):
    paths = host.Paths(tmp_path)
    paths.pid("kafka").parent.mkdir(parents=True)
    paths.pid("kafka").write_text("not a pid")
    assert host.read_pid(paths, "kafka") is None
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    paths.pid("kafka").write_text(str(proc.pid))
    assert host.read_pid(paths, "kafka") is None
    paths.pid("kafka").write_text(str(os.getpid()))
    assert host.read_pid(paths, "kafka") == os.getpid()


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(host.shutil, "which", lambda name: None)
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(host.StackError, match="missing openjdk-17-jdk-headless"):
        host.java_major_version()
