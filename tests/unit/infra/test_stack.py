"""The stack's commands: clear errors when a port is taken or a service dies on start; the names
callers import from infra.stack stay there."""

from __future__ import annotations

import socket
import sys

import pytest

from aura.errors import AuraError
from aura.settings import Settings
from infra import host, services, stack


def test_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = Settings().replace(home=tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
        with pytest.raises(stack.StackError, match=f"port {port} is taken"):
            stack.up(s, services=("redis",))


def test_a_service_that_dies_on_start_reports_its_log_tail(tmp_path, monkeypatch):
    def start_broken(s, paths):
        paths.log("redis").parent.mkdir(parents=True, exist_ok=True)
        return host.spawn(paths, "redis", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
                          cwd=tmp_path)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    monkeypatch.setitem(stack.SERVICE_TABLE, "redis",
                        stack.Service("redis", lambda s: s.redis.port, start_broken, lambda s: False))
    s = Settings().replace(home=tmp_path, redis_url=f"redis://127.0.0.1:{free_port}/0", start_timeout_s=20)
    with pytest.raises(stack.StackError, match="redis died on start(.|\n)*boom: bad config"):
        stack.up(s, services=("redis",))


def test_callers_names_are_importable_from_infra_stack():
    assert stack.SERVICES == ("kafka", "cassandra", "redis", "mail")
    assert stack.SERVICE_TABLE is services.SERVICE_TABLE
    assert stack.StackError is host.StackError and stack.Paths is host.Paths
    for name in stack.__all__:
        assert getattr(stack, name) is not None, name


def test_stack_error_is_an_aura_error_and_still_a_runtime_error():
    assert issubclass(stack.StackError, AuraError) and issubclass(stack.StackError, RuntimeError)
