"""Hostile and careless requests against the real API (in process, real stores): numbers JSON allows
but the system cannot hold, text that cannot be encoded, deep and huge objects, bad keys with bad
bodies, read-scope calls that would create objects. Every answer is a 4xx with a JSON body naming
the field, and an error answer has changed nothing.
"""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.integration]

RAW_NAN = b'{"id": "%s", "priority": NaN, "conditions": {"field": "context.page", "op": "equals", "value": "x"}}'
SURROGATE = '{"id": "%s", "priority": 1, "conditions": {"field": "context.page", "op": "equals", "value": "x"}, ' \
            '"content": {"banner": "\\ud800"}}'
HUGE = b'{"id": "%s", "priority": 1e400, "conditions": {"field": "context.page", "op": "equals", "value": "x"}}'
JSON = {"Content-Type": "application/json"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_refused(r, status: int = 422, field: str | None = None) -> list:
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]  # the body itself is valid JSON, whatever the input held
    if field is not None:  # named in the location, or in the message for a path inside a free-form object
        assert any(field in map(str, d.get("loc", [])) or field in d.get("msg", "") for d in detail), detail
    return detail


def rule_ids(client) -> set[str]:
    r = client.get("/v1/personalization/rules")
    assert r.status_code == 200, r.text
    return {d["id"] for d in r.json()["rules"]}


@pytest.mark.parametrize("body", [RAW_NAN, HUGE, SURROGATE.encode()], ids=["nan", "1e400", "lone-surrogate"])
def test_a_rule_the_system_cannot_hold_is_refused_and_not_stored(api_client, body):
    rid = uid("hostile")
    r = api_client.post("/v1/personalization/rules", content=body.replace(b"%s", rid.encode()), headers=JSON)
    assert_refused(r)
    assert rid not in rule_ids(api_client)  # listing still answers, and the rule is not there
    ev = api_client.post("/v1/personalization/evaluate", json={"user_id": "u1", "context": {"page": "x"}})
    assert ev.status_code == 200, ev.text


def test_lone_surrogates_in_experiments_and_bandits_are_refused_before_anything_is_stored(api_client):
    eid, bid = uid("exp"), uid("band")
    exp = ('{"id": "' + eid + '", "variants": [{"id": "control"}, {"id": "b\\udc00"}]}').encode()
    assert_refused(api_client.post("/v1/experiments", content=exp, headers=JSON))
    band = ('{"id": "' + bid + '", "policy": "thompson", "arms": ["a", "b"], '
            '"params": {"note": "\\ud83d"}}').encode()
    assert_refused(api_client.post("/v1/bandits", content=band, headers=JSON))
    assert api_client.get(f"/v1/experiments/{eid}").status_code == 404
    assert api_client.get(f"/v1/bandits/{bid}").status_code == 404
    assert api_client.get("/v1/experiments").status_code == 200
    assert api_client.post("/v1/experiments/assign", json={"user_id": "u1"}).status_code == 200


@pytest.mark.parametrize("context,field", [
    ({"visits": 1e300}, "visits"), ({"visits": -1e12}, "visits"), ({"device": "x" * 5000}, "device"),
    ({f"k{i}": 1 for i in range(100)}, "context"),
])
def test_extreme_bandit_context_is_refused_at_the_edge(api_client, context, field):
    bid = uid("ctx")
    created = api_client.post("/v1/bandits", json={"id": bid, "policy": "linucb", "arms": ["a", "b"],
                                                   "features": ["visits", "device=mobile"]})
    assert created.status_code == 201, created.text
    r = api_client.post(f"/v1/bandits/{bid}/choose", json={"user_id": "u1", "context": context})
    assert_refused(r, field=field)


def test_free_form_objects_are_bounded(api_client):
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    rule = {"id": uid("deep"), "priority": 1, "conditions": {"field": "context.page", "op": "equals", "value": "x"}}
    assert_refused(api_client.post("/v1/personalization/rules", json={**rule, "content": deep}), field="content")
    big = {"id": uid("big"), "variants": [{"id": "a", "payload": {"blob": "x" * 200_000}}, {"id": "b"}]}
    assert_refused(api_client.post("/v1/experiments", json=big))
    nested_body = b"[" * 100 + b"]" * 100
    assert_refused(api_client.post("/v1/personalization/evaluate", content=nested_body, headers=JSON))


def test_large_finite_numbers_that_would_overflow_are_refused(api_client):
    ev = {"event_id": uid("e"), "event_type": "purchase", "user_id": "u1", "event_time": 1_700_000_000_000,
          "order": {"order_id": "o1", "lines": [{"item_id": "i1", "quantity": 2_000_000_000, "unit_price": 1e300}]}}
    detail = assert_refused(api_client.post("/v1/events", json=ev))
    assert {"quantity", "unit_price"} & {str(x) for d in detail for x in d["loc"]}, detail
    item = {"event_id": uid("c"), "event_type": "item_upsert", "item_id": "i1", "event_time": 1_700_000_000_000,
            "item": {"title": "t", "price": 1e200}}
    assert_refused(api_client.post("/v1/catalog/items", json=item), field="price")


def test_authentication_comes_before_the_body(api_client):
    for headers in ({"X-API-Key": "nonsense"}, {"Authorization": "Bearer aura_000000000000_" + "x" * 43}, {}):
        r = api_client.post("/v1/personalization/rules", content=b"{not json", headers={**JSON, **headers},
                            )
        if not headers:  # the client sends its admin key by default: drop it
            r = api_client.post("/v1/personalization/rules", content=b"{not json",
                                headers={**JSON, "Authorization": ""})
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.json()["detail"] == "missing or invalid API key: send X-API-Key or Authorization: Bearer"


def test_failed_authentication_is_throttled_per_address(isolated, api_key):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    s = isolated.replace(failed_auth_burst=3, failed_auth_per_s=0.01)
    good = api_key("read")
    with TestClient(create_app(s)) as client:
        codes = [client.get("/v1/profiles/u1", headers={"X-API-Key": f"aura_{uuid.uuid4().hex[:12]}_{'y' * 43}"})
                 .status_code for _ in range(6)]
        assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}, codes
        # the same address is refused even with a good key until its failures decay: guessing is slow
        r = client.get("/v1/profiles/u1", headers={"X-API-Key": good})
        assert r.status_code == 429 and "Retry-After" in r.headers


def test_read_scope_strategy_choice_creates_no_bandit(api_client, api_key, isolated, redis_client):
    read = {"X-API-Key": api_key("read")}
    placement = uid("pl")
    r = api_client.post(f"/v1/strategies/{placement}/choose", json={"user_id": "u1"}, headers=read)
    assert r.status_code == 404, r.text
    bandits = api_client.get("/v1/bandits").json()["bandits"]
    assert not [b for b in bandits if b.get("placement") == placement]
    # only an admin creates one; then read keys choose with it, and an admin deletes it
    assert api_client.put(f"/v1/strategies/{placement}", headers=read).status_code == 403
    created = api_client.put(f"/v1/strategies/{placement}", json={"strategies": ["hybrid", "trending"]})
    assert created.status_code == 201, created.text
    r = api_client.post(f"/v1/strategies/{placement}/choose", json={"user_id": "u1"}, headers=read)
    assert r.status_code == 200 and r.json()["arm"] in {"hybrid", "trending"}, r.text
    assert api_client.delete(f"/v1/strategies/{placement}").status_code == 204
    gone = api_client.post(f"/v1/strategies/{placement}/choose", json={"user_id": "u1"}, headers=read)
    assert gone.status_code == 404


def test_configuration_objects_are_limited_per_kind(isolated, api_key):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(isolated.replace(max_config_objects=0)),
                    headers={"X-API-Key": api_key("admin")}) as client:
        rule = {"id": uid("lim"), "priority": 1, "variant": "v",
                "conditions": {"field": "context.page", "op": "equals", "value": "x"}}
        r = client.post("/v1/personalization/rules", json=rule)
        assert r.status_code == 409 and "limit" in r.json()["detail"], r.text
        assert client.post("/v1/bandits", json={"id": uid("lim"), "arms": ["a"]}).status_code == 409
        assert client.post("/v1/experiments", json={"id": uid("lim"), "variants": [{"id": "a"}, {"id": "b"}]}
                           ).status_code == 409
