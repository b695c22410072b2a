"""Building one campaign message: the user's live recommendations (the shared ranking), the signed
open and click links, the rendered template and the outbox record (schemas/avro/campaign_message.avsc).

Shared by the worker's drainer (streams/campaign_drain.py) and the API's preview and test-send
(serving/routes/campaigns.py), so a preview shows what a send would contain: the drainer ranks every
user of a pass at once (``recommendations_many``: the whole ranking in three pipelines, one more for
the items' metadata), the API one user (``recommendations``: the stream's pool when it answers, which
is that same ranking kept current).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from aura.keys import RedisKeys
from aura.ranking.batch import compute_many
from aura.ranking.ranker import Ranker
from aura.ranking.reader import Recommender
from aura.ranking.request import Request
from aura.state.campaign_sends import address, context, render, variant_of
from aura.state.campaigns import Campaign


async def recommendations(ranker: Recommender, redis: Any, keys: RedisKeys, user_id: str,
                          k: int) -> list[dict[str, Any]]:
    """The user's top ``k`` hybrid recommendations (the stream's precomputed pool when it answers the
    request, else the whole ranking) with each item's title and URL (catalog metadata)."""
    if k <= 0:
        return []
    result = await ranker.recommend(Request(user_id=user_id, limit=k))
    top = result.items[:k]
    if not top:
        return []
    pipe = redis.pipeline(transaction=False)
    for item, _score, _src in top:
        pipe.hmget(keys.recs_item_meta(item), "title", "url")
    metas = await pipe.execute()
    return [{"item_id": i, "score": float(sc), "title": m[0] or i, "url": m[1] or ""}
            for (i, sc, _src), m in zip(top, metas, strict=True)]


async def recommendations_many(ranker: Ranker, redis: Any, keys: RedisKeys, user_ids: list[str],
                               k: int) -> dict[str, list[dict[str, Any]]]:
    """Each user's top ``k`` hybrid recommendations with titles and URLs, for many users at once: the
    whole ranking in three pipelines (aura/ranking/batch.py), then one pipeline of the distinct
    items' metadata."""
    users = list(dict.fromkeys(user_ids))
    if k <= 0 or not users:
        return {u: [] for u in users}
    results = await compute_many(ranker, [Request(user_id=u, limit=k) for u in users])
    tops = [r.items[:k] for r in results]
    items = list(dict.fromkeys(i for top in tops for i, _s, _src in top))
    pipe = redis.pipeline(transaction=False)
    for item in items:
        pipe.hmget(keys.recs_item_meta(item), "title", "url")
    metas = dict(zip(items, await pipe.execute() if items else [], strict=True))
    return {u: [{"item_id": i, "score": float(sc), "title": metas[i][0] or i, "url": metas[i][1] or ""}
                for i, sc, _src in top] for u, top in zip(users, tops, strict=True)}


def link_token(secret: str, campaign_id: str, user_id: str, message_id: str) -> str:
    """An unguessable token naming (campaign, user, message) for the open pixel and click links."""
    payload = base64.urlsafe_b64encode(f"{campaign_id}\x1f{user_id}\x1f{message_id}".encode()).decode().rstrip("=")
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:24]
    return f"{payload}.{mac}"


def parse_link_token(secret: str, token: str) -> tuple[str, str, str] | None:
    """(campaign, user, message) of a valid token; None when it is forged or malformed."""
    payload, _, mac = token.partition(".")
    good = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:24]
    if not payload or not hmac.compare_digest(mac, good):
        return None
    try:
        parts = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("\x1f")
    except (ValueError, UnicodeDecodeError):
        return None
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def links(base_url: str, secret: str, campaign_id: str, user_id: str, message_id: str) -> dict[str, str]:
    token = link_token(secret, campaign_id, user_id, message_id)
    base = base_url.rstrip("/")
    return {"id": message_id, "open_pixel": f"{base}/v1/campaigns/track/open/{token}.gif",
            "click_url": f"{base}/v1/campaigns/track/click/{token}"}


def outbox_record(c: Campaign, user_id: str, message_id: str, attrs: dict[str, Any], profile: dict[str, Any],
                  event: dict[str, Any], recs: list[dict[str, Any]], message_links: dict[str, str],
                  trigger_ms: int, now_ms: int, test: bool = False) -> dict[str, Any]:
    """The rendered message as its outbox record; raises jinja2.TemplateError on a template error."""
    variant = variant_of(c, user_id)
    parts = render(c, context(user_id, attrs, profile, event, recs, message_links), variant)
    return {"message_id": message_id, "campaign_id": c.id, "user_id": user_id, "channel": c.channel,
            "address": address(c.channel, attrs) or "", "subject": parts.get("subject"), "title": parts.get("title"),
            "body": parts["body"], "html": parts.get("html"), "url": parts.get("url"),
            "items": [r["item_id"] for r in recs], "trigger_time": trigger_ms, "queued_time": now_ms, "test": test,
            "variant": variant}
