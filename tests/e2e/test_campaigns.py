"""Campaigns end to end: events in through Kafka, the worker's triggers and guards, the email
connector, and messages counted at the local stack's real SMTP server (infra/mailsink.py)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.state import maildir
from aura.state.campaign_sends import held_out, variant_of
from aura.state.campaigns import validate_campaign
from schemas.codec import codec
from streams import connectors
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DELAY_S = 3


def mails_to(s, address: str) -> list[dict]:
    return maildir.list_messages(maildir.root(s), limit=100_000, to=address)


def accepted_log(s, address: str) -> list[str]:
    log = Path(maildir.root(s)) / "accepted.log"
    return [ln for ln in log.read_text().splitlines() if ln.split("\t")[2] == address] if log.exists() else []


def user_with_email(producer: EventProducer, tag: str, name: str, **prefs) -> tuple[str, str]:
    user = f"{tag}-{name}"
    address = f"{user}@example.test"
    now = int(time.time() * 1000)
    producer.send_identity({"event_id": f"{user}-id", "event_type": "create", "user_id": user, "event_time": now,
                            "attributes": {"email": address, "first_name": name.title()}})
    if prefs:
        producer.send_identity({"event_id": f"{user}-pref", "event_type": "preferences", "user_id": user,
                                "event_time": now + 1, "preferences": prefs})
    return user, address


@pytest.fixture
def campaigns(api_client):
    """Create campaigns for this test; they are completed and deleted afterwards (the definitions
    table is shared by every test of the keyspace)."""
    made: list[str] = []

    def create(doc: dict) -> str:
        r = api_client.post("/v1/campaigns", json=doc)
        assert r.status_code == 201, r.text
        made.append(doc["id"])
        assert api_client.post(f"/v1/campaigns/{doc['id']}/activate").json()["status"] == "running"
        return doc["id"]

    yield create
    for cid in made:
        api_client.post(f"/v1/campaigns/{cid}/complete")
        api_client.delete(f"/v1/campaigns/{cid}")


def wait_for_identities(s, redis_client, producer: EventProducer, users: list[str]) -> None:
    """Identity and behavior events go through different agents: let the identities land first."""
    assert producer.flush().failed == 0
    wait_for(lambda: all(redis_client.hexists(f"{s.redis.prefix}:user:{{{u}}}:attrs", "x:email") for u in users),
             timeout=60, what="the users' identity attributes")


def many_users_with_email(s, redis_client, worker_factory, tag: str, n: int) -> tuple[list[str], set[str], Any]:
    """``n`` users with an email address, their identities produced, a worker started, and their
    attributes in Redis; returns (users, addresses, worker)."""
    users = [f"{tag}-{i:05d}" for i in range(n)]
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    now = int(time.time() * 1000)
    for u in users:
        producer.send_identity({"event_id": f"{u}-id", "event_type": "create", "user_id": u, "event_time": now,
                                "attributes": {"email": f"{u}@example.test"}})
    assert producer.flush().failed == 0
    worker = worker_factory(s)
    keys = RedisKeys(s.redis.prefix)

    def identities_in() -> bool:
        pipe = redis_client.pipeline(transaction=False)
        for u in users:
            pipe.hexists(keys.user_attrs(u), "x:email")
        return all(pipe.execute())

    wait_for(identities_in, timeout=600, interval=1.0, what="the identities")
    return users, {f"{u}@example.test" for u in users}, worker


def test_cart_abandonment_sends_one_email_with_recommendations_and_none_after_a_purchase(
        isolated, worker_factory, api_client, redis_client, campaigns):
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"ca{uuid.uuid4().hex[:8]}"
    campaign = {
        "id": f"{tag}-cart", "channel": "email", "audience": {"type": "users", "users": [f"{tag}-ann", f"{tag}-bob"]},
        "trigger": {"type": "event", "event_type": "add_to_cart", "delay_s": DELAY_S, "unless": "purchase"},
        "template": {"subject": "{{ user.first_name }}, your cart is waiting",
                     "body": "Because you left {{ event.item_id }}:\n{% for r in recommendations %}"
                             "* {{ r.item_id }}\n{% endfor %}Open: {{ message.open_pixel }}"},
        "goal": {"event_type": "purchase", "window_s": 3600},
    }
    campaigns(campaign)

    producer = EventProducer(s, bootstrap.kafka_producer(s))
    abandoner, abandoner_mail = user_with_email(producer, tag, "ann")
    buyer, buyer_mail = user_with_email(producer, tag, "bob")
    wait_for_identities(s, redis_client, producer, [abandoner, buyer])
    now = int(time.time() * 1000)
    # other users make items popular, so the abandoner has recommendations
    for i in range(30):
        producer.send({"event_id": f"{tag}-pop-{i}", "event_type": "view", "user_id": f"{tag}-crowd{i % 5}",
                       "item_id": f"{tag}-item{i % 6}", "event_time": now + i})
    for user in (abandoner, buyer):
        producer.send({"event_id": f"{user}-cart", "event_type": "add_to_cart", "user_id": user,
                       "item_id": f"{tag}-item0", "event_time": now + 100})
    # the buyer purchases inside the window; a replay of the abandoner's trigger changes nothing
    producer.send({"event_id": f"{buyer}-buy", "event_type": "purchase", "user_id": buyer, "event_time": now + 1000,
                   "order": {"order_id": f"{buyer}-o", "currency": "EUR",
                             "lines": [{"item_id": f"{tag}-item0", "quantity": 1, "unit_price": 10.0}]}})
    producer.send({"event_id": f"{abandoner}-cart", "event_type": "add_to_cart", "user_id": abandoner,
                   "item_id": f"{tag}-item0", "event_time": now + 100})
    assert producer.flush().failed == 0

    mails = wait_for(lambda: mails_to(s, abandoner_mail), timeout=90, what="the abandoner's email")
    sent_at = time.time()
    assert sent_at * 1000 >= now + 100 + DELAY_S * 1000  # not before the delay
    mail = mails[0]
    assert mail["subject"] == "Ann, your cart is waiting"
    assert f"Because you left {tag}-item0" in mail["text"]
    listed = [ln[2:] for ln in mail["text"].splitlines() if ln.startswith("* ")]
    assert listed, mail["text"]

    # every due entry settled: the buyer's was cancelled by the purchase
    due_key = f"{s.redis.prefix}:camp:{{campaigns}}:due"
    wait_for(lambda: redis_client.zcard(due_key) == 0, timeout=60, what="the due set to drain")
    stats = wait_for(lambda: (st := api_client.get(f"/v1/campaigns/{tag}-cart/performance").json())["counts"].get(
        "sent") and st, timeout=30, what="the sent count")
    assert stats["counts"]["sent"] == 1 and stats["counts"]["cancelled"] == 1
    assert mails_to(s, buyer_mail) == [] and accepted_log(s, buyer_mail) == []
    assert len(mails_to(s, abandoner_mail)) == 1 and len(accepted_log(s, abandoner_mail)) == 1

    deliveries = api_client.get(f"/v1/campaigns/users/{abandoner}/deliveries").json()["deliveries"]
    assert [d["status"] for d in deliveries] == ["sent"]
    assert deliveries[0]["items"] == listed  # rendered with the user's recommendations, as recorded


def test_caps_consent_holdout_and_bad_input(isolated, worker_factory, api_client, redis_client, campaigns):
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"cg{uuid.uuid4().hex[:8]}"
    audience = {"type": "users", "users": [f"{tag}-u{i}" for i in range(40)] + [f"{tag}-quiet"]}
    campaign = {"id": f"{tag}-view", "channel": "email", "trigger": {"type": "event", "event_type": "view"},
                "audience": audience,
                "template": {"subject": "Hello {{ user.first_name }}", "body": "Seen {{ event.item_id }}"},
                "caps": {"per_user": 5, "per_campaign_user": 2, "window_s": 3600}, "holdout": 0.3}
    bad = api_client.post("/v1/campaigns", json={**campaign, "channel": "fax", "caps": {"per_user": "x"},
                                                 "template": {"subject": "{% if %}", "body": "x"},
                                                 "audience": {"type": "segment", "segment": "nobody"}})
    assert bad.status_code == 422
    named = {tuple(e["loc"]) for e in bad.json()["detail"]}
    assert {("body", "channel"), ("body", "caps", "per_user"), ("body", "template", "subject"),
            ("body", "audience", "segment")} <= named
    assert api_client.post("/v1/campaigns", json={**campaign, "id": f"{tag}-draft"}).status_code == 201
    assert api_client.post(f"/v1/campaigns/{tag}-draft/pause").status_code == 409  # a draft cannot pause
    assert api_client.delete(f"/v1/campaigns/{tag}-draft").status_code == 204
    campaigns(campaign)

    producer = EventProducer(s, bootstrap.kafka_producer(s))
    users = [user_with_email(producer, tag, f"u{i}") for i in range(40)]
    opted_out, opted_out_mail = user_with_email(producer, tag, "quiet", channels={"email": False})
    wait_for_identities(s, redis_client, producer, [u for u, _ in users] + [opted_out])
    wait_for(lambda: redis_client.hexists(f"{s.redis.prefix}:user:{{{opted_out}}}:attrs", "p:channels"),
             timeout=60, what="the opt-out preference")
    now = int(time.time() * 1000)
    for user, _ in [*users, (opted_out, opted_out_mail)]:
        for k in range(4):  # four triggers each: at most two messages (per_campaign_user)
            producer.send({"event_id": f"{user}-v{k}", "event_type": "view", "user_id": user,
                           "item_id": f"item{k}", "event_time": now + k})
    assert producer.flush().failed == 0
    due_key = f"{s.redis.prefix}:camp:{{campaigns}}:due"

    def settled():
        perf = api_client.get(f"/v1/campaigns/{tag}-view/performance").json()
        c = perf["counts"]
        return redis_client.zcard(due_key) == 0 and c.get("sent", 0) == c.get("queued", -1) and perf

    wait_for(lambda: redis_client.zcard(due_key) == 0 and redis_client.exists(
        f"{s.redis.prefix}:camp:{{{tag}-view}}:stats"), timeout=90, what="the triggers to settle")
    perf = wait_for(settled, timeout=60, what="every queued message sent")
    held = perf["holdout"]["users"]
    treated = perf["treated"]["users"]
    assert held + treated == 40  # the opted-out user qualifies for neither
    assert 2 <= held <= 22  # 30% of 40 within a generous binomial tolerance
    mine = [m["to"] for m in mails_to(s, f"{tag}-")]  # one scan of the shared Maildir for every user of the test
    per_user = {u: mine.count(a) for u, a in users}
    assert set(per_user.values()) <= {0, 2}
    assert sum(1 for n in per_user.values() if n == 2) == treated
    assert perf["counts"]["sent"] == 2 * treated
    assert perf["counts"]["suppressed:no_consent"] == 4 and mails_to(s, opted_out_mail) == []


class Receiver:
    """A local webhook provider: refuses the first ``fail_first`` requests with 503, then accepts."""

    def __init__(self, fail_first: int) -> None:
        self.fail_left = fail_first
        self.received: list[tuple[dict, bytes]] = []
        self.refused = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    outer.refused += 1
                    self.send_response(503)
                else:
                    outer.received.append((dict(self.headers), body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_push_webhooks_are_signed_retried_while_the_provider_is_down_and_in_app_messages_polled(
        isolated, worker_factory, api_client, redis_client, campaigns):
    receiver = Receiver(fail_first=3)
    try:
        s = isolated.replace(campaign_tick_s=0.05, campaign_webhook_url=receiver.url,
                             campaign_webhook_secret="test-secret")
        worker_factory(s)
        tag = f"cw{uuid.uuid4().hex[:8]}"
        users = [f"{tag}-p{i}" for i in range(3)]
        campaigns({"id": f"{tag}-push", "channel": "push", "audience": {"type": "users", "users": users},
                   "trigger": {"type": "event", "event_type": "purchase"},
                   "template": {"title": "Thanks {{ user.id }}", "body": "Order of {{ event.value | default(0) }}"}})
        campaigns({"id": f"{tag}-inapp", "channel": "in_app", "audience": {"type": "users", "users": users},
                   "trigger": {"type": "event", "event_type": "purchase"},
                   "template": {"title": "Hi", "body": "You bought something"}})
        producer = EventProducer(s, bootstrap.kafka_producer(s))
        now = int(time.time() * 1000)
        for u in users:
            producer.send_identity({"event_id": f"{u}-id", "event_type": "create", "user_id": u, "event_time": now,
                                    "attributes": {"push_token": f"tok-{u}"}})
        assert producer.flush().failed == 0
        wait_for(lambda: all(redis_client.hexists(f"{s.redis.prefix}:user:{{{u}}}:attrs", "x:push_token")
                             for u in users), timeout=60, what="identities")
        for u in users:
            producer.send({"event_id": f"{u}-buy", "event_type": "purchase", "user_id": u, "event_time": now,
                           "order": {"order_id": f"{u}-o", "currency": "EUR",
                                     "lines": [{"item_id": "i1", "quantity": 1, "unit_price": 5.0}]}})
        assert producer.flush().failed == 0

        wait_for(lambda: len(receiver.received) >= 3, timeout=90, what="three webhooks after the outage")
        assert receiver.refused == 3  # retried while the provider answered 503; nothing lost
        keys = set()
        for headers, body in receiver.received:
            mac = hmac.new(b"test-secret", body, hashlib.sha256).hexdigest()
            assert headers["X-Aura-Signature"] == f"sha256={mac}"
            doc = json.loads(body)
            assert headers["Idempotency-Key"] == doc["message_id"] and doc["address"] == f"tok-{doc['user_id']}"
            keys.add(doc["message_id"])
        assert len(keys) == 3 and sorted(json.loads(b)["user_id"] for _h, b in receiver.received) == users

        inbox = wait_for(lambda: api_client.get(f"/v1/campaigns/inbox/{users[0]}").json()["messages"], timeout=60,
                         what="the in-app message")
        assert [m["body"] for m in inbox] == ["You bought something"]
    finally:
        receiver.close()


def test_preview_test_send_and_open_tracking(isolated, worker_factory, api_client, redis_client, campaigns):
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"ct{uuid.uuid4().hex[:8]}"
    cid = campaigns({"id": f"{tag}-t", "channel": "email", "audience": {"type": "users", "users": [f"{tag}-tess"]},
                     "trigger": {"type": "event", "event_type": "view"},
                     "template": {"subject": "For {{ user.first_name }}", "body": "Pixel {{ message.open_pixel }}"}})
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    user, address = user_with_email(producer, tag, "tess")
    wait_for_identities(s, redis_client, producer, [user])
    pv = api_client.post(f"/v1/campaigns/{cid}/preview", json={"user_id": user}).json()
    assert pv["subject"] == "For Tess" and pv["deliverable"] and pv["address"] == address
    # an unknown user has no first_name: the strict template fails, and the answer says where
    nobody = api_client.post(f"/v1/campaigns/{cid}/preview", json={"user_id": f"{tag}-nobody"})
    assert nobody.status_code == 422 and nobody.json()["detail"][0]["loc"] == ["body", "template"]
    r = api_client.post(f"/v1/campaigns/{cid}/test-send", json={"user_id": user})
    assert r.status_code == 202
    mail = wait_for(lambda: mails_to(s, address), timeout=60, what="the test email")[0]
    assert mail["subject"] == "For Tess"
    assert api_client.post(f"/v1/campaigns/{cid}/test-send", json={"user_id": f"{tag}-nobody"}).status_code == 409
    # a real send, then its open pixel: counted once however often it is fetched
    producer.send({"event_id": f"{user}-v", "event_type": "view", "user_id": user, "item_id": "i", "event_time":
                   int(time.time() * 1000)})
    assert producer.flush().failed == 0
    mails = wait_for(lambda: len(m := mails_to(s, address)) == 2 and m, timeout=60, what="the campaign email")
    pixel = next(m for m in mails if m["message_id"] != mail["message_id"])["text"].split("Pixel ")[1].strip()
    path = pixel.split("8000", 1)[1]
    for _ in range(2):
        got = api_client.get(path, headers={"Authorization": ""})
        assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
    assert api_client.get(path.replace(".gif", "x.gif")).status_code == 404
    perf = wait_for(lambda: (p := api_client.get(f"/v1/campaigns/{cid}/performance").json())["counts"].get("opened")
                    and p, timeout=60, what="the open counted")
    assert perf["counts"]["opened"] == 1 and perf["counts"]["sent"] == 1 and perf["rates"]["open"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_sigkill_of_the_worker_during_a_send_never_sends_twice(isolated, worker_factory, api_client, redis_client,
                                                                campaigns):
    n = 10_000
    s = isolated.replace(campaign_tick_s=0.05, campaign_rate_per_min=600_000.0, kafka_session_timeout_s=10.0)
    tag = f"ck{uuid.uuid4().hex[:8]}"
    users, addresses, worker = many_users_with_email(s, redis_client, worker_factory, tag, n)
    campaigns({"id": f"{tag}-blast", "channel": "email", "audience": {"type": "users", "users": users},
               "trigger": {"type": "event", "event_type": "view"},
               "template": {"subject": "Hello {{ user.id }}", "body": "One message per user"}})
    now = int(time.time() * 1000)  # after the campaign started: older events never trigger it
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    for u in users:
        producer.send({"event_id": f"{u}-v", "event_type": "view", "user_id": u, "item_id": "i1", "event_time": now})
    assert producer.flush().failed == 0

    def accepted() -> list[list[str]]:
        log = Path(maildir.root(s)) / "accepted.log"
        return [ln.split("\t") for ln in log.read_text().splitlines() if "@example.test" in ln
                and ln.split("\t")[2] in addresses]

    kills = 0
    for fraction in (0.2, 0.5):
        wait_for(lambda f=fraction: len(accepted()) >= f * n, timeout=900, interval=0.5, what=f"{fraction:.0%} sent")
        worker.stop(sig=9)  # SIGKILL in the middle of the send
        kills += 1
        worker = worker_factory(s, name=f"after-kill-{kills}")
    wait_for(lambda: len({a[2] for a in accepted()}) == n, timeout=1200, interval=1.0, what="every user's message")
    lines = accepted()
    new = [a[2] for a in lines if a[3] == "new"]
    dupes = [a for a in lines if a[3] == "duplicate"]
    assert sorted(new) == sorted(addresses)  # exactly one stored message per user, none twice
    # a copy reaches the server only for a message of the batch in flight at the kill (accepted, not yet
    # recorded sent: at most one batch per kill and channel agent), and the Message-ID drops it
    assert len(dupes) <= kills * connectors.batch_size(s), dupes
    stored = [m["to"] for m in maildir.list_messages(maildir.root(s), limit=10 * n) if m["to"] in addresses]
    assert sorted(stored) == sorted(addresses)


def test_transactional_api_trigger_is_idempotent_per_occurrence(isolated, worker_factory, api_client, redis_client,
                                                                campaigns):
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"cx{uuid.uuid4().hex[:8]}"
    cid = campaigns({"id": f"{tag}-receipt", "channel": "email", "trigger": {"type": "api"},
                     "audience": {"type": "users", "users": [f"{tag}-rita"]}, "caps": {"per_campaign_user": 0},
                     "template": {"subject": "Receipt {{ event.properties.order }}", "body": "Thanks"}})
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    user, address = user_with_email(producer, tag, "rita")
    wait_for_identities(s, redis_client, producer, [user])
    for occurrence, order in (("o1", "A-1"), ("o1", "A-1"), ("o2", "A-2")):  # a client retry of o1
        r = api_client.post(f"/v1/campaigns/{cid}/trigger",
                            json={"user_id": user, "occurrence_id": occurrence, "data": {"order": order}})
        assert r.status_code == 202, r.text
    mails = wait_for(lambda: len(m := mails_to(s, address)) >= 2 and m, timeout=60, what="two receipts")
    assert sorted(m["subject"] for m in mails) == ["Receipt A-1", "Receipt A-2"]
    due_key = f"{s.redis.prefix}:camp:{{campaigns}}:due"
    wait_for(lambda: redis_client.zcard(due_key) == 0, timeout=30, what="the due set to drain")
    assert len(accepted_log(s, address)) == 2
    event_campaign = {"id": f"{tag}-ev", "channel": "email",
                      "trigger": {"type": "event", "event_type": "view"}, "template": {"subject": "s", "body": "b"}}
    assert api_client.post("/v1/campaigns", json=event_campaign).status_code == 201
    assert api_client.post(f"/v1/campaigns/{tag}-ev/trigger", json={"user_id": user, "occurrence_id": "x"}
                           ).status_code == 409  # a draft, and event-triggered
    assert api_client.delete(f"/v1/campaigns/{tag}-ev").status_code == 204


class Collector:
    """A private SMTP server (aiosmtpd) on its own port, started when the test says so."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.messages: list[tuple[str, list[str]]] = []  # (Message-ID, recipients)
        self.controller: Controller | None = None

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.messages.append((maildir.message_key(raw), list(envelope.rcpt_tos)))
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        if self.controller is not None:
            self.controller.stop()


def test_smtp_down_then_up_loses_nothing_and_never_holds_back_another_channel(
        isolated, worker_factory, api_client, redis_client, campaigns):
    server = Collector()  # not listening yet: the provider is down
    try:
        s = isolated.replace(campaign_tick_s=0.05, campaign_smtp_port=server.port, campaign_breaker_failures=2,
                             campaign_breaker_max_open_s=1.0)
        worker_factory(s)
        producer = EventProducer(s, bootstrap.kafka_producer(s))
        tag = f"cd{uuid.uuid4().hex[:8]}"
        users = [user_with_email(producer, tag, f"u{i}") for i in range(20)]
        wait_for_identities(s, redis_client, producer, [u for u, _ in users])
        ids = [u for u, _ in users]
        mail = campaigns({"id": f"{tag}-mail", "channel": "email", "audience": {"type": "users", "users": ids},
                          "trigger": {"type": "event", "event_type": "view"},
                          "template": {"subject": "Hi {{ user.id }}", "body": "Hello"}})
        inapp = campaigns({"id": f"{tag}-inapp", "channel": "in_app", "audience": {"type": "users", "users": ids},
                           "trigger": {"type": "event", "event_type": "view"},
                           "template": {"title": "Hi", "body": "Hello in the app"}})
        now = int(time.time() * 1000)
        for u in ids:
            producer.send({"event_id": f"{u}-v", "event_type": "view", "user_id": u, "item_id": "i1",
                           "event_time": now})
        assert producer.flush().failed == 0

        def counts(cid: str) -> dict:
            return api_client.get(f"/v1/campaigns/{cid}/performance").json()["counts"]

        # the in-app provider delivers everything while the mail server is down
        wait_for(lambda: counts(inapp).get("sent", 0) == 20, timeout=90, what="every in-app message")
        wait_for(lambda: counts(mail).get("queued", 0) == 20, timeout=60, what="every email queued")
        assert counts(mail).get("sent", 0) == 0 and server.messages == []
        server.start()  # the provider comes back: every message goes out, once
        wait_for(lambda: counts(mail).get("sent", 0) == 20, timeout=120, what="every email after the outage")
        got = sorted(rcpt for _mid, rcpts in server.messages for rcpt in rcpts)
        assert got == sorted(a for _u, a in users)
        assert len({mid for mid, _r in server.messages}) == 20 and counts(mail).get("failed", 0) == 0
    finally:
        server.close()


def latest_aggregates(s, campaign_id: str, want: int, timeout: float = 60.0) -> dict[str, dict]:
    """The newest ``agg.campaigns`` record per key of one campaign (read to the end of the topic once
    ``want`` keys are there)."""
    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"agg-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([layout.topic(s, layout.AGG_CAMPAIGNS)])
    out: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None and len(out) >= want:
                break  # read to the end of the topic
            if msg is not None and not msg.error() and msg.key().decode().startswith(f"{campaign_id}|"):
                out[msg.key().decode()] = codec("agg_campaign").decode(msg.value())
    finally:
        consumer.close()
    return out


def test_ab_variants_render_per_user_and_their_figures_reach_the_api_and_the_analyst_topic(
        isolated, worker_factory, api_client, redis_client, campaigns):
    s = isolated.replace(campaign_tick_s=0.05, campaign_agg_interval_s=1.0)
    worker_factory(s)
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    tag = f"cab{uuid.uuid4().hex[:8]}"
    users = [user_with_email(producer, tag, f"u{i}") for i in range(40)]
    wait_for_identities(s, redis_client, producer, [u for u, _ in users])
    doc = {"id": f"{tag}-ab", "channel": "email", "audience": {"type": "everyone"}, "holdout": 0.25,
           "trigger": {"type": "event", "event_type": "view"}, "goal": {"event_type": "purchase"},
           "template": {"subject": "Plain", "body": "Hello"},
           "variants": [{"id": "plain", "weight": 1, "template": {}},
                        {"id": "named", "weight": 1, "template": {"subject": "Hello {{ user.id }}"}}]}
    cid = campaigns(doc)
    c = validate_campaign(doc)
    now = int(time.time() * 1000)
    for u, _a in users:
        producer.send({"event_id": f"{u}-v", "event_type": "view", "user_id": u, "item_id": "i1", "event_time": now})
    assert producer.flush().failed == 0
    treated = [(u, a) for u, a in users if not held_out(c, u)]

    def perf() -> dict:
        return api_client.get(f"/v1/campaigns/{cid}/performance").json()

    wait_for(lambda: (q := perf())["counts"].get("sent", 0) == len(treated) and q["holdout"]["users"] == 40 - len(
        treated), timeout=90, what="every treated user's mail and every held-out user")
    for u, _a in users:  # each treated user got the subject of their variant; held-out users nothing
        sent = api_client.get(f"/v1/campaigns/users/{u}/deliveries").json()["deliveries"]
        subjects = [d["subject"] for d in sent if d["campaign_id"] == cid and d["status"] == "sent"]
        expected = [] if held_out(c, u) else ["Plain" if variant_of(c, u) == "plain" else f"Hello {u}"]
        assert subjects == expected, (u, subjects)
    # and the mail server stored them (its accepted log: the Maildir holds every test's messages)
    assert sorted(ln.split("\t")[2] for _u, a in treated for ln in accepted_log(s, a)) == sorted(a for _u, a in treated)
    bought = int(time.time() * 1000)  # after every user qualified (the goal counts from then on)
    for u, _a in users:  # everyone converts: the figures split by variant
        producer.send({"event_id": f"{u}-buy", "event_type": "purchase", "user_id": u, "event_time": bought,
                       "order": {"order_id": f"{u}-o", "currency": "EUR",
                                 "lines": [{"item_id": "i1", "quantity": 1, "unit_price": 2.0}]}})
    assert producer.flush().failed == 0
    p = wait_for(lambda: (q := perf())["treated"]["conversions"] + q["holdout"]["conversions"] == 40 and q,
                 timeout=90, what="every conversion")
    rows = {r["variant"]: r for r in p["variants"]}
    for vid in ("plain", "named"):
        mine = [u for u, _a in treated if variant_of(c, u) == vid]
        assert rows[vid]["users"] == rows[vid]["conversions"] == len(mine)
        assert rows[vid]["counts"]["sent"] == len(mine) and rows[vid]["revenue"] == 2.0 * len(mine)
    def published() -> dict[str, dict] | None:  # published every second: wait for a record after the conversions
        g = latest_aggregates(s, cid, 3, timeout=10)
        done = len(g) == 3 and g[f"{cid}|"]["treated_conversions"] == len(treated)
        return g if done and g[f"{cid}|named"]["treated_conversions"] == rows["named"]["users"] else None

    aggs = wait_for(published, timeout=90, what="the analyst records")
    assert aggs[f"{cid}|"]["sent"] == len(treated) and aggs[f"{cid}|"]["holdout_users"] == 40 - len(treated)
    assert aggs[f"{cid}|named"]["sent"] == rows["named"]["counts"]["sent"]
