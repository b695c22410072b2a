"""Schemathesis against the OpenAPI document of the real API (uvicorn subprocess, real stores):
no generated request may get a 5xx, and every documented response must match its schema.

Bounded (``MAX_EXAMPLES`` per operation) so the whole run stays around two minutes on the shared
two-core machine. ``POST /v1/models/{model_id}/train`` is left out: it starts a training process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from aura.settings import REPO_ROOT, settings_env
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_EXAMPLES = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(stack, key_store, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """``aura api`` on a free port with its own prefixes, and an admin key."""
    import uuid

    from aura import layout
    from infra.migrate import ensure_topics

    tag = f"fz{uuid.uuid4().hex[:8]}"
    s = stack.replace(**{"topic_prefix": tag, "redis_prefix": tag, "topic_partitions": 1,
                                 "home": tmp_path_factory.mktemp("fuzzhome")})
    ensure_topics(s, layout.ALL_TOPICS)
    port = _free_port()
    _rec, token = key_store.create("fuzz", ["admin"], 1e6, 1_000_000)
    log = open(s.home / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "aura.cli", "api", "--port", str(port)], cwd=REPO_ROOT,
                            env={**os.environ, **settings_env(s)}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/v1/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return proc.poll() is not None

    wait_for(up, timeout=60, interval=0.3, what="the API subprocess")
    assert proc.poll() is None, (s.home / "api.log").read_text()
    yield {"base": base, "token": token, "log": s.home / "api.log"}
    proc.terminate()
    proc.wait(20)
    log.close()


@pytest.fixture(scope="module")
def fuzz_schema(served):
    return schemathesis.openapi.from_url(f"{served['base']}/openapi.json")


def test_no_server_error_and_responses_match_the_schema(fuzz_schema, served):
    """Every operation, MAX_EXAMPLES generated cases each. (Driven by hand rather than with
    ``schemathesis.pytest.from_fixture``, which breaks on pytest 9: no ``Function._nodeid``.)"""
    failures: dict[str, str] = {}
    ran = 0
    for result in fuzz_schema.get_all_operations():
        op = result.ok()
        if op.path.endswith("/train"):
            continue
        ran += 1

        @given(case=op.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers={"X-API-Key": served["token"]},
                                   checks=[not_a_server_error, response_schema_conformance,
                                           content_type_conformance])

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every failure, then report
            failures[f"{op.method.upper()} {op.path}"] = str(exc)[:1500]
    assert ran >= 20, f"only {ran} operations found"
    if failures:  # the server's tracebacks (the 500 handler logs them) say where to fix
        tracebacks = "\n".join(line for line in served["log"].read_text(errors="replace").splitlines()
                               if line.strip())[-6000:]
        raise AssertionError(f"{len(failures)} operations failed: {sorted(failures)}\n\n" + "\n\n".join(
            f"{k}:\n{v}" for k, v in failures.items()) + f"\n\n--- API log (tail):\n{tracebacks}")


def test_openapi_documents_auth_examples_and_every_error_shape(fuzz_schema, served):
    doc = httpx.get(f"{served['base']}/openapi.json").json()
    assert {"ApiKey", "Bearer"} <= set(doc["components"]["securitySchemes"])
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            # open on purpose: probes, metrics, and the campaign open pixel and click redirect (mail
            # clients fetch them; the signed token in the path is the credential)
            if path in ("/v1/health", "/metrics") or path.startswith("/v1/campaigns/track/"):
                assert "security" not in op, (method, path)
                continue
            assert op.get("security"), f"{method} {path} documents no security"
            for code in ("401", "403", "429", "503"):
                assert code in op["responses"], f"{method} {path} does not document {code}"
            assert "example" in op["responses"]["401"]["content"]["application/json"]


# ---------------------------------------------------------------------------------------------
# Hostile JSON for every route with a body, built from the OpenAPI document's own examples: one
# leaf (or the whole body) replaced by a value JSON can spell and the system cannot hold, or an
# unknown field added. Numbers beyond the double range and lone surrogates are written as raw JSON
# text (json.dumps cannot produce them), through placeholder strings.

HOSTILE_TEXT = {
    "@NAN@": "NaN", "@INF@": "Infinity", "@NINF@": "-Infinity", "@BIG@": "1e400", "@NBIG@": "-1e400",
    "@SURROGATE@": '"\\ud800"', "@LOW_SURROGATE@": '"x\\udfff"',
}


def _nested(depth: int) -> Any:
    node: Any = 0
    for _ in range(depth):
        node = [node]
    return node


HOSTILE_VALUES = [*HOSTILE_TEXT, 1e308, -1e308, 10**30, -(2**63), 2**64, "x" * 200_000, "", _nested(40),
                  list(range(20_000)), {f"k{i}": i for i in range(5_000)}, None, True, {"$ref": "#"}]
CONFIG_LISTS = ("/v1/personalization/rules", "/v1/experiments", "/v1/bandits")


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def _replace(node: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    out = dict(node) if isinstance(node, dict) else list(node)
    out[path[0]] = _replace(node[path[0]], path[1:], value)
    return out


def _raw(body: Any) -> bytes:
    text = __import__("json").dumps(body)
    for token, raw in HOSTILE_TEXT.items():
        text = text.replace(f'"{token}"', raw)
    return text.encode()


def _body_operations(doc: dict) -> list[tuple[str, str, Any]]:
    out = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            media = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if media is None or path.endswith("/train"):
                continue
            example = media.get("example")
            if example is None and media.get("examples"):
                example = next(iter(media["examples"].values())).get("value")
            concrete = path.replace("{", "fz-").replace("}", "")
            out.append((method.upper(), concrete, example if example is not None else {}))
    return out


def test_hostile_json_never_gets_a_5xx_and_an_error_changes_nothing(served):
    from hypothesis import strategies as st

    headers = {"X-API-Key": served["token"], "Content-Type": "application/json"}
    doc = httpx.get(f"{served['base']}/openapi.json").json()
    operations = _body_operations(doc)
    assert len(operations) >= 15, operations
    client = httpx.Client(base_url=served["base"], headers=headers, timeout=30)
    outcomes: dict[str, int] = {}
    by_label: dict[str, dict[str, int]] = {}  # the report (docs/hardening.md): AURA_FUZZ_REPORT=<file>
    failures: list[str] = []

    def snapshot() -> list[Any]:
        return [client.get(p).json() for p in CONFIG_LISTS]

    @st.composite
    def hostile(draw: Any) -> tuple[str, str, bytes, str]:
        method, path, example = draw(st.sampled_from(operations))
        kind = draw(st.sampled_from(["leaf", "leaf", "leaf", "unknown_field", "whole"]))
        value = draw(st.sampled_from(HOSTILE_VALUES))
        if kind == "whole" or not isinstance(example, dict | list):
            body = value
        elif kind == "unknown_field" and isinstance(example, dict):
            body = {**example, draw(st.sampled_from(["zz_unknown", "__proto__", "\u0000"])): value}
        else:
            body = _replace(example, draw(st.sampled_from(_leaves(example))), value)
        label = value if isinstance(value, str) and value in HOSTILE_TEXT else type(value).__name__
        return method, path, _raw(body), f"{kind}:{label}"

    @given(case=hostile())
    @settings(max_examples=int(os.environ.get("AURA_FUZZ_EXAMPLES", "400")), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: tuple[str, str, bytes, str]) -> None:
        method, path, body, label = case
        config_write = any(path.startswith(p) for p in CONFIG_LISTS) and method in ("POST", "PUT")
        before = snapshot() if config_write else None
        try:
            r = client.request(method, path, content=body)
        except httpx.TransportError:  # a reused keep-alive connection reset: judge the case on a fresh one
            r = httpx.request(method, f"{served['base']}{path}", content=body, headers=headers, timeout=30)
        outcomes[f"{r.status_code // 100}xx"] = outcomes.get(f"{r.status_code // 100}xx", 0) + 1
        per_label = by_label.setdefault(label, {})
        per_label[str(r.status_code)] = per_label.get(str(r.status_code), 0) + 1
        if r.status_code >= 500:
            failures.append(f"{method} {path} [{label}] -> {r.status_code} {r.text[:200]}")
            return
        if r.status_code >= 400:
            detail = r.json()["detail"]  # serialisable, with a detail
            assert detail, (method, path, label)
            if before is not None and snapshot() != before:
                failures.append(f"{method} {path} [{label}] -> {r.status_code} but the configuration changed")

    fuzz()
    client.close()
    if os.environ.get("AURA_FUZZ_REPORT"):
        with open(os.environ["AURA_FUZZ_REPORT"], "w") as f:
            __import__("json").dump(by_label, f, indent=1, sort_keys=True)
    assert not failures, "\n".join(failures[:30])
    assert outcomes.get("4xx", 0) > 0, outcomes
