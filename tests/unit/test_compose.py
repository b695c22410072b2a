"""docker-compose.yml describes the same stack and speaks the same AURA_* settings."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from aura.settings import ENV_FIELDS, REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_has_the_whole_stack_and_only_known_settings():
    doc = yaml.safe_load(COMPOSE.read_text())
    assert {"kafka", "cassandra", "redis", "migrate", "worker", "api", "demo"} <= set(doc["services"])
    fields = {f"AURA_{name.upper()}" for name in ENV_FIELDS}
    env = doc["x-aura-env"]
    assert env and set(env) <= fields, set(env) - fields
    assert doc["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_docker_compose_config_accepts_the_file():
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no docker compose plugin or docker-compose on this machine")
    proc = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_compose_keeps_the_stock_cluster_batch_bounds():
    """The cassandra image warns above 10 partitions and 5 KiB per batch (its cells with their overhead,
    up to twice the values the worker bounds): compose's worker stays under."""
    env = yaml.safe_load(COMPOSE.read_text())["x-aura-env"]
    assert int(env["AURA_CASSANDRA_BATCH_PARTITIONS"]) <= 10
    assert 2 * int(env["AURA_CASSANDRA_BATCH_KIB"]) < 5
