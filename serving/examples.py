"""Examples for the OpenAPI document: one request and one answer per operation, and the error answers.

Owns no state. The examples are real answers of the API (captured over the benchmark's seeded state
and trimmed to a few list entries), kept in one table keyed by ``"METHOD /path"`` so that routers stay
short and a route's example is found in one place; ``document_examples`` puts them into the
document (media-type ``example`` / ``examples``) when FastAPI builds it, and gives every error
answer without a body schema the ``ErrorBody`` schema and an example. Typed routes may carry their
own examples instead (``json_schema_extra`` on the model, as the system routes do); both count.

``tests/unit/serving/test_examples.py`` walks the document and fails when a route's JSON body or 2xx
answer has no example, and checks every example here against the route's own models, so a new
route, or a model change that invalidates an example, fails the suite.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

T0 = 1795784400000  # 2026-11-27 09:00 UTC, epoch ms
USER, ITEM = "u7", "i7"

_BACKFILL = {"state": "done", "scanned": 1200, "changed": 41, "members": 41, "requested_at": T0,
             "started_at": T0 + 400, "finished_at": T0 + 2900}

ERROR_DETAILS: dict[str, str] = {
    "400": "bad request",
    "401": "missing or invalid API key: send X-API-Key or Authorization: Bearer",
    "403": "this API key lacks the 'admin' scope",
    "404": "not found",
    "409": "already exists",
    "413": "request body larger than 1048576 bytes",
    "429": "rate limit of 200 requests/s (burst 400) exceeded for this key",
    "503": "redis+cassandra unavailable; retry shortly",
}

_RULE = {"id": "vip-home", "priority": 10, "channels": ["web"], "variant": "vip-banner",
         "conditions": {"all": [{"field": "context.page", "op": "equals", "value": "home"},
                                {"field": "segments", "op": "contains", "value": "vip"}]},
         "content": {"banner": "free-shipping"}}
_EXPERIMENT_IN = {"id": "checkout-button",
                  "variants": [{"id": "control"}, {"id": "green", "payload": {"color": "green"}}],
                  "targeting": {"field": "context.device", "op": "in", "value": ["ios", "web"]}}
_EXPERIMENT = {**_EXPERIMENT_IN, "status": "draft", "created_at": T0}
_BANDIT_IN = {"id": "hero-banner", "arms": ["hero-a", "hero-b"], "policy": "thompson"}
_BANDIT = {**_BANDIT_IN, "created_at": T0}
_CHOSEN = {"bandit_id": "hero-banner", "decision_id": "hero-banner:a6a71d47454d4966b48d175b6226ecd3", "arm": "hero-b",
           "explore": False, "policy": "thompson"}
_ASSIGNED = {"experiment_id": "checkout-button", "variant": "green", "payload": {"color": "green"},
             "in_experiment": True, "reason": "assigned", "exposure_id": "47c142033add483399755309ecf3ed95"}
_RECS = {"recommendation_id": "hybrid+ease:3:32e5767ba7724ca2", "user_id": USER, "method": "hybrid",
         "strategy": "hybrid", "placement": "homepage",
         "items": [{"item_id": "i552", "score": 1.00027, "sources": ["cooc", "trending"]},
                   {"item_id": "i565", "score": 0.979592, "sources": ["cooc"]},
                   {"item_id": "i578", "score": 0.959184, "sources": ["ease", "cooc"]}]}
_NEIGHBOURS = {"item_id": ITEM, "kind": "similar", "items": [{"item_id": "i62", "score": 1.0},
                                                            {"item_id": "i75", "score": 0.979592},
                                                            {"item_id": "i88", "score": 0.959184}]}
_TRENDING = {"category": "shoes", "half_life_h": 24.0, "items": [{"item_id": "i301", "score": 41.5},
                                                                 {"item_id": "i17", "score": 33.25}]}
_EVENT = {"event_id": "5f0c1a52-8c1e-4a53-9f55-0c5e9f1f2a10", "event_type": "view", "user_id": USER, "item_id": ITEM,
          "event_time": T0, "context": {"page": "product", "placement": "product_page", "device": "web",
                                        "session_id": "s-81f2"}}
_PURCHASE = {"event_id": "0b7d3f0e-4a5e-4d8b-bb1e-2f7a0e9c4d21", "event_type": "purchase", "user_id": USER,
             "event_time": T0 + 60_000, "value": 59.9,
             "order": {"order_id": "o-1001", "currency": "EUR", "lines": [{"item_id": ITEM, "quantity": 1,
                                                                           "unit_price": 59.9}]}}
_IDENTITY = {"event_id": "9a1d7c64-1f0e-4b1e-8f3a-6f2b9d0c7e55", "event_type": "update", "user_id": USER,
             "event_time": T0, "attributes": {"country": "FR", "tier": "gold"}}
_ITEM = {"title": "Trail running shoe", "categories": ["shoes", "running"], "tags": ["trail"], "brand": "Acme",
         "price": 89.0, "currency": "EUR", "stock": 12, "available": True, "text": "Light trail shoe with grip sole"}
_CATALOG = {"event_id": "c3f0a9d2-7b61-4e0f-9a51-3d2e8f6b1c40", "event_type": "upsert", "item_id": ITEM,
            "event_time": T0, "item": _ITEM}
_WINDOW = {"grain": "hour", "from": T0 - 86_400_000, "to": T0, "source": "redis"}

# "METHOD /path": {"request": body example, "response": 2xx answer example, "errors": {status: detail}}
EXAMPLES: dict[str, dict[str, Any]] = {
    "GET /metrics": {"response": "# HELP aura_http_request_duration_seconds API request latency by route template\n"
                                 "# TYPE aura_http_request_duration_seconds histogram\n"
                                 'aura_http_request_duration_seconds_bucket{le="0.001",method="GET",'
                                 'route="/v1/profiles/{user_id}/activity"} 1843.0\n'},
    "GET /v1/profiles/{user_id}/activity": {
        "response": {"user_id": USER, "counts": {"view": 8, "click": 2}, "first_seen": T0 - 86_400_000,
                     "last_seen": T0, "recent_items": ["i77", "i94", "i111"], "source": "redis"},
        "errors": {"404": f"no activity for user '{USER}'"}},
    "GET /v1/profiles/{user_id}": {
        "response": {"user_id": USER, "attributes": {"country": "FR", "tier": "gold"},
                     "preferences": {"channels": {"email": True}, "categories": {"shoes": 1.0}},
                     "counts": {"view": 8, "click": 2, "purchase": 1}, "first_seen": T0 - 86_400_000, "last_seen": T0,
                     "recent_items": ["i77", "i94", "i111"], "sessions": 3, "orders": 1, "lifetime_value": 59.9,
                     "engagement": 41.7, "lifecycle": "active", "lifecycle_at_last_event": "active",
                     "affinities": {"category:shoes": 0.82, "brand:acme": 0.4, "price:50-100": 0.6},
                     "segments": ["buyer"], "source": "redis"},
        "errors": {"404": f"no profile for user '{USER}'"}},
    "GET /v1/profiles/{user_id}/preferences": {
        "response": {"user_id": USER, "preferences": {"channels": {"email": True}, "categories": {"shoes": 1.0}}},
        "errors": {"404": f"no profile for user '{USER}'"}},
    "GET /v1/profiles/{user_id}/engagement": {
        "response": {"user_id": USER, "engagement": 41.7, "lifecycle": "active", "last_seen": T0, "source": "redis"},
        "errors": {"404": f"no profile for user '{USER}'"}},
    "GET /v1/profiles/{user_id}/segments": {
        "response": {"user_id": USER, "segments": ["buyer", "engaged"], "source": "redis"},
        "errors": {"404": f"no profile for user '{USER}'"}},
    "GET /v1/profiles/{user_id}/history": {
        "response": {"user_id": USER, "recent_items": ["i77", "i94", "i111"], "counts": {"view": 8, "click": 2},
                     "sessions": 3, "source": "redis"},
        "errors": {"404": f"no profile for user '{USER}'"}},
    "POST /v1/events": {"request": _EVENT, "response": {"accepted": 1}},
    "POST /v1/events/batch": {"request": [_EVENT, _PURCHASE], "response": {"accepted": 2}},
    "POST /v1/identity": {"request": _IDENTITY, "response": {"accepted": 1}},
    "POST /v1/catalog/items": {"request": _CATALOG, "response": {"accepted": 1}},
    "GET /v1/segments": {"response": {"segments": [
        {"name": "vip", "rule": [["ltv", ">", 500]], "source": "settings", "members": 12, "backfill": None},
        {"name": "big_spenders", "rule": [["orders", ">=", 3], ["ltv", ">=", 300]], "source": "api", "members": 41,
         "backfill": _BACKFILL}]}},
    "GET /v1/segments/{segment}": {"response": {
        "name": "big_spenders", "rule": [["orders", ">=", 3], ["ltv", ">=", 300]], "source": "api", "members": 41,
        "backfill": _BACKFILL}, "errors": {"404": "unknown segment 'platinum'"}},
    "POST /v1/segments": {"response": {"id": "big_spenders", "conditions": [["orders", ">=", 3], ["ltv", ">=", 300]],
                                       "backfill": {"state": "pending", "requested_at": T0}},
                          "errors": {"409": "segment 'big_spenders' exists; PUT replaces it"}},
    "PUT /v1/segments/{segment}": {"response": {
        "id": "big_spenders", "conditions": [["orders", ">=", 3], ["ltv", ">=", 300]],
        "backfill": {"state": "pending", "requested_at": T0}}},
    "DELETE /v1/segments/{segment}": {"response": {"name": "big_spenders", "deleted": True,
                                                   "backfill": {"state": "pending", "requested_at": T0}}},
    "POST /v1/segments/{segment}/backfill": {"response": {"name": "big_spenders",
                                                          "backfill": {"state": "pending", "requested_at": T0}}},
    "GET /v1/segments/{segment}/members": {
        "response": {"segment": "vip", "members": ["u12", "u7", "u903"], "next_cursor": 0, "total": 3,
                     "source": "redis"},
        "errors": {"404": "unknown segment 'platinum'"}},
    "GET /v1/analytics/conversion": {"response": {
        "grain": "day", "from": T0 - 30 * 86_400_000, "to": T0, "source": "redis",
        "steps": [{"name": "view", "events": 5210, "users": 812},
                  {"name": "add_to_cart", "events": 640, "users": 233, "conversion_from_previous": 0.286946},
                  {"name": "purchase", "events": 151, "users": 118, "conversion_from_previous": 0.506438}],
        "overall": 0.14532,
        "by_device": {"mobile": {"view": 3100, "add_to_cart": 350, "purchase": 70, "conversion": 0.022581}},
        "by_channel": {"web": {"view": 4800, "add_to_cart": 600, "purchase": 140, "conversion": 0.029167}},
        "by_placement": [{"placement": "homepage", "impressions": 9100, "clicks": 410, "ctr": 0.045055,
                          "attributed_orders": 37, "attributed_revenue": 2210.5, "conversion": 0.090244}],
        "by_experiment": [{"experiment_id": "checkout-button", "variant_id": "green", "impressions": 4400,
                           "clicks": 220, "ctr": 0.05, "orders": 21, "revenue": 1180.0, "conversion": 0.095455}]}},
    "GET /v1/analytics/engagement": {"response": {
        **_WINDOW, "active_users": 1204, "events": {"view": 1406.0, "add_to_cart": 190.0, "purchase": 61.0},
        "series": [{"start": T0 - 7_200_000, "active_users": 610, "events": 1020},
                   {"start": T0 - 3_600_000, "active_users": 702, "events": 1180}]}},
    "GET /v1/analytics/funnel": {"response": {
        **_WINDOW, "steps": [{"name": "view", "events": 1406.0, "users": 1204},
                             {"name": "add_to_cart", "events": 190.0, "users": 160, "conversion_from_previous": 0.1329},
                             {"name": "purchase", "events": 61.0, "users": 55, "conversion_from_previous": 0.3438}]}},
    "GET /v1/analytics/revenue": {"response": {
        **_WINDOW, "revenue": 3587.78, "orders": 61, "average_order_value": 58.816066,
        "series": [{"start": T0 - 3_600_000, "revenue": 412.5, "orders": 7}]}},
    "GET /v1/analytics/attribution": {"response": {
        **_WINDOW, "window_s": 86400, "total_revenue": 3587.78, "attributed_revenue": 3220.02, "attributed_orders": 55,
        "by_placement": {"cart": 677.3, "homepage": 674.16, "product_page": 449.04},
        "by_variant": [{"experiment_id": "exp-homepage", "variant_id": "A", "orders": 5, "revenue": 553.75,
                        "impressions": 139, "recommendation_clicks": 50}]}},
    "GET /v1/analytics/journeys": {"response": {
        "from": T0 - 86_400_000, "to": T0, "source": "cassandra",
        "journeys": [{"path": ["homepage", "product"], "sessions": 14}, {"path": ["search_results", "product"],
                                                                         "sessions": 14}]}},
    "GET /v1/analytics/placements": {"response": {
        **_WINDOW, "placements": [{"placement": "cart", "impressions": 283, "clicks": 101, "ctr": 0.35689},
                                  {"placement": "homepage", "impressions": 272, "clicks": 104, "ctr": 0.382353}]}},
    "GET /v1/analytics/items": {"response": {
        **_WINDOW, "items": [{"item_id": "i399", "views": 56, "clicks": 21, "impressions": 284, "ctr": 0.073944,
                              "add_to_carts": 7, "units": 4, "revenue": 53.6}]}},
    "POST /v1/recommendations/generate": {
        "request": {"user_id": USER, "method": "hybrid", "limit": 3,
                    "context": {"placement": "homepage", "device": "ios"},
                    "filters": {"exclude_seen": True, "categories": ["shoes"], "max_price": 120.0,
                                "boost_categories": {"running": 1.5}, "max_per_category": 2}},
        "response": _RECS},
    "GET /v1/recommendations/users/{user_id}": {"response": _RECS},
    "GET /v1/recommendations/similar/{item_id}": {"response": _NEIGHBOURS},
    "GET /v1/recommendations/also-bought/{item_id}": {"response": {**_NEIGHBOURS, "kind": "also_bought"}},
    "GET /v1/recommendations/trending": {"response": _TRENDING},
    "POST /v1/recommendations/impressions": {
        "request": {"user_id": USER, "recommendation_id": _RECS["recommendation_id"], "items": ["i552", "i565", "i578"],
                    "placement": "homepage"},
        "response": {"event_id": "7d3c1f4e-2b7a-4c1e-9e0f-1a2b3c4d5e6f"}},
    "POST /v1/recommendations/clicks": {
        "request": {"user_id": USER, "recommendation_id": _RECS["recommendation_id"], "item_id": "i565",
                    "placement": "homepage"},
        "response": {"event_id": "8e4d2a5f-3c8b-4d2f-8f1a-2b3c4d5e6f70"}},
    "PUT /v1/content/{item_id}": {"request": _ITEM, "response": {
        "item_id": ITEM, "event_id": "c3f0a9d2-7b61-4e0f-9a51-3d2e8f6b1c40", "event_type": "upsert"}},
    "DELETE /v1/content/{item_id}": {"response": {
        "item_id": ITEM, "event_id": "d4a1b0e3-8c72-4f10-8b62-4e3f9a7c2d51", "event_type": "delete"}},
    "GET /v1/content/{item_id}": {
        "response": {"item_id": ITEM, **{k: v for k, v in _ITEM.items() if k != "currency"}, "metadata": {},
                     "event_time": T0},
        "errors": {"404": f"item '{ITEM}' not found"}},
    "GET /v1/content/{item_id}/similar": {"response": {**_NEIGHBOURS, "kind": "content"}},
    "GET /v1/content/recommend/{user_id}": {"response": {
        **_RECS, "recommendation_id": "content:0:3f209276e8b844ee", "method": "content", "strategy": "content",
        "placement": "default", "items": [{"item_id": "i62", "score": 1.0, "sources": ["content"]}]}},
    "GET /v1/content/trending/items": {"response": _TRENDING},
    "POST /v1/content": {"response": {"item_id": "5f0c2a9e41d34b7a9c8e6d1f2a3b4c5d",
                                      "event_id": "e5b2c1f4-9d83-4a21-9c73-5f4a0b8d3e62", "event_type": "upsert"},
                         "errors": {"409": "item 'post-17' exists; PUT /v1/content/{item_id} replaces it"}},
    "GET /v1/content": {"response": {"items": [{"item_id": ITEM, **{k: v for k, v in _ITEM.items() if k != "currency"},
                                                "metadata": {}, "event_time": T0}],
                                     "next_cursor": 96, "examined": 100}},
    "POST /v1/content/recommend": {"response": {
        **_RECS, "recommendation_id": "content:0:8a1e4c0b9f2d7e63", "method": "content", "strategy": "content",
        "placement": "default", "items": [{"item_id": "i62", "score": 1.0, "sources": ["content"]}]}},
    "GET /v1/content/{item_id}/performance": {
        "response": {"item_id": ITEM, "interaction_weight": 57.0, "trending": 12.4,
                     "neighbours": {"cooc": ["i62", "i75"], "content": ["i88"]}},
        "errors": {"404": f"no interactions seen for item '{ITEM}'"}},
    "GET /v1/models": {"response": {
        "types": ["content_tfidf", "ease", "item_knn"],
        "models": [{"model_id": "ease", "version": 3, "type": "ease", "config": {"lam": 250.0},
                    "window_start": T0 - 604_800_000, "window_end": T0, "metrics": {"hr@10": 0.31, "ndcg@10": 0.17},
                    "status": "ready", "created_at": T0, "updated_at": T0, "has_artifact": True}],
        "placements": {"homepage": {"model_id": "ease", "version": 3}}}},
    "GET /v1/models/{model_id}/versions": {
        "response": [{"model_id": "ease", "version": 3, "type": "ease", "config": {"lam": 250.0},
                      "window_start": T0 - 604_800_000, "window_end": T0, "metrics": {"hr@10": 0.31},
                      "status": "ready", "created_at": T0, "updated_at": T0, "has_artifact": True}],
        "errors": {"404": "no model 'ease'"}},
    "POST /v1/models/{model_id}/train": {
        "request": {"type": "ease", "lam": 250.0, "activate": "homepage"},
        "response": {"model_id": "ease", "job_pid": 48211, "log": ".aura/models/aura/job-ease.log"}},
    "POST /v1/models/{model_id}/versions/{version}/activate": {
        "request": {"placement": "homepage", "weights": {"ease": 1.0, "cooc": 0.8, "trending": 0.2}},
        "response": {"placement": "homepage", "model_id": "ease", "version": 3,
                     "weights": {"ease": 1.0, "cooc": 0.8, "trending": 0.2}},
        "errors": {"404": "no model 'ease' version 3"}},
    "POST /v1/models/{model_id}/predict": {
        "request": {"history": ["i7", "i14"], "k": 3},
        "response": {"model_id": "ease", "version": 3, "items": [{"item_id": "i62", "score": 0.412},
                                                                  {"item_id": "i75", "score": 0.377}]},
        "errors": {"404": "no model 'ease' version None"}},
    "GET /v1/models/{model_id}/monitoring": {"response": {
        "model_id": "ease", "served_as": {"hybrid+ease": {"impressions": 5120, "clicks": 389, "ctr": 0.07598}}}},
    "GET /v1/segments/{segment}/history": {
        "response": {"segment": "vip", "grain": "day", "from": T0 - 172_800_000, "to": T0, "buckets": [
            {"start": T0 - 172_800_000, "joined": 41, "left": 3, "members": 812},
            {"start": T0 - 86_400_000, "joined": 17, "left": 9, "members": 820}]},
        "errors": {"404": "unknown segment 'vip'"}},
    "POST /v1/models": {
        "request": {"model_id": "als-home", "type": "als", "config": {"factors": 64, "alpha": 20.0},
                    "description": "ALS for the homepage"},
        "response": {"model_id": "als-home", "type": "als", "config": {
            "factors": 64, "regularization": 0.05, "alpha": 20.0, "iterations": 15, "k_users": 200, "k_items": 100},
            "description": "ALS for the homepage",
            "train": "POST /v1/models/als-home/train with train_from, train_to, eval_to"},
        "errors": {"409": "model 'als-home' exists"}},
    "GET /v1/models/hyperparameters": {"response": {"types": {"item_knn": {
        "neighbours": {"type": "int", "min": 1, "max": 2000, "default": 100, "doc": "neighbours kept per item"}}}}},
    "GET /v1/models/{model_id}": {
        "response": {"model_id": "als-home", "definition": {"model_id": "als-home", "type": "als",
                                                             "config": {"factors": 64}, "description": "",
                                                             "created_at": T0},
                     "versions": [{"model_id": "als-home", "version": 1, "type": "als", "config": {"factors": 64},
                                   "window_start": T0 - 604_800_000, "window_end": T0 - 86_400_000,
                                   "metrics": {"hr@10": 0.28}, "status": "training", "created_at": T0,
                                   "updated_at": T0, "has_artifact": False, "lists": None,
                                   "progress": {"job_id": "train-als-home-1", "stage": "fit", "done": 7,
                                                "total": 15}}]},
        "errors": {"404": "no model 'als-home'"}},
    "GET /v1/models/{model_id}/compare": {
        "response": {"model_id": "als-home", "versions": [
            {"version": 2, "type": "als", "status": "ready", "window": [T0 - 604_800_000, T0 - 86_400_000],
             "config": {"factors": 128}, "metrics": {"hr@10": 0.31, "ndcg@10": 0.17, "coverage@10": 0.4,
                                                     "users": 812.0}},
            {"version": 1, "type": "als", "status": "active", "window": [T0 - 604_800_000, T0 - 86_400_000],
             "config": {"factors": 64}, "metrics": {"hr@10": 0.28, "ndcg@10": 0.15, "coverage@10": 0.45,
                                                    "users": 812.0}}],
            "best": {"hr@10": 2, "ndcg@10": 2, "coverage@10": 1}},
        "errors": {"404": "no model 'als-home'"}},
    "GET /v1/models/placements/{placement}": {"response": {
        "placement": "homepage", "current": {"model_id": "als-home", "version": 2, "weights": {"ease": 1.0},
                                             "updated_at": T0},
        "default_weights": {"cooc": 0.8, "ease": 1.0}, "history": [
            {"at": T0, "model_id": "als-home", "version": 2, "weights": {"ease": 1.0}, "lists": "m.als-home.v2",
             "action": "activate"}]}},
    "POST /v1/models/placements/{placement}/rollback": {"response": {
        "placement": "homepage",
        "rolled_back": {"at": T0, "model_id": "als-home", "version": 2, "weights": None, "lists": "m.als-home.v2",
                        "action": "activate"},
        "serving": {"at": T0 - 3_600_000, "model_id": "als-home", "version": 1, "weights": None,
                    "lists": "m.als-home.v1", "action": "activate"}}},
    "PUT /v1/models/placements/{placement}/weights": {
        "request": {"weights": {"ease": 1.0, "users": 0.3, "trending": 0.1}},
        "response": {"placement": "homepage", "weights": {"ease": 1.0, "users": 0.3, "trending": 0.1},
                     "updated_at": T0, "visible": "next request", "warnings": []}},
    "GET /v1/personalization/rules": {"response": {"rules": [_RULE]}},
    "POST /v1/personalization/rules": {"request": _RULE, "response": _RULE,
                                       "errors": {"409": "rule 'vip-home' exists"}},
    "PUT /v1/personalization/rules/{rule_id}": {"request": {**_RULE, "priority": 20},
                                                "response": {**_RULE, "priority": 20},
                                                "errors": {"404": "rule 'vip-home' not found"}},
    "DELETE /v1/personalization/rules/{rule_id}": {"errors": {"404": "rule 'vip-home' not found"}},
    "GET /v1/personalization/rules/{rule_id}": {"response": _RULE, "errors": {"404": "rule 'vip-home' not found"}},
    "POST /v1/personalization/evaluate": {
        "request": {"user_id": USER, "channel": "web", "context": {"page": "home", "device": "ios"}},
        "response": {"user_id": USER, "channel": "web", "rule_id": "vip-home", "variant": "vip-banner",
                     "content": {"banner": "free-shipping"}, "matches": []}},
    "POST /v1/experiments": {"request": _EXPERIMENT_IN, "response": _EXPERIMENT,
                             "errors": {"409": "experiment 'checkout-button' exists"}},
    "GET /v1/experiments": {"response": {"experiments": [_EXPERIMENT]}},
    "PUT /v1/experiments/{experiment_id}": {"request": _EXPERIMENT_IN, "response": _EXPERIMENT,
                                            "errors": {"404": "experiment 'checkout-button' not found"}},
    "DELETE /v1/experiments/{experiment_id}": {"errors": {"404": "experiment 'checkout-button' not found"}},
    "GET /v1/experiments/{experiment_id}": {"response": _EXPERIMENT,
                                            "errors": {"404": "experiment 'checkout-button' not found"}},
    "POST /v1/experiments/{experiment_id}/status": {
        "request": {"status": "running"}, "response": {**_EXPERIMENT, "status": "running", "running_at": T0 + 1000},
        "errors": {"404": "experiment 'checkout-button' not found"}},
    "POST /v1/experiments/{experiment_id}/assign": {
        "request": {"user_id": USER, "context": {"device": "ios"}}, "response": _ASSIGNED,
        "errors": {"404": "experiment 'checkout-button' not found"}},
    "POST /v1/experiments/assign": {"request": {"user_id": USER, "context": {"device": "ios"}},
                                    "response": {"user_id": USER, "assignments": [_ASSIGNED]}},
    "GET /v1/experiments/{experiment_id}/results": {
        "response": {"experiment_id": "checkout-button", "status": "running", "metric": "purchase",
                     "control": "control", "winner": None, "variants": [
                         {"variant": "control", "weight": 0.5, "exposures": 1200, "conversions": 36,
                          "conversion_rate": 0.03, "ci95": [0.0218, 0.0412], "revenue": 2150.4,
                          "revenue_per_exposure": 1.792, "conversions_by_event": {"purchase": 36}},
                         {"variant": "green", "weight": 0.5, "exposures": 1188, "conversions": 48,
                          "conversion_rate": 0.0404, "ci95": [0.0306, 0.0532], "revenue": 2890.1,
                          "revenue_per_exposure": 2.433, "conversions_by_event": {"purchase": 48}, "uplift": 0.347,
                          "z": 1.37, "p_value": 0.17}],
                     "srm": {"chi2": 0.06, "p_value": 0.81, "mismatch": False}, "source": "cassandra"},
        "errors": {"404": "experiment 'checkout-button' not found"}},
    "GET /v1/bandits": {"response": {"bandits": [_BANDIT]}},
    "POST /v1/bandits": {"request": _BANDIT_IN, "response": _BANDIT, "errors": {"409": "bandit 'hero-banner' exists"}},
    "PUT /v1/bandits/{bandit_id}": {"request": {"arms": ["hero-a", "hero-b", "hero-c"], "policy": "thompson"},
                                    "response": {**_BANDIT, "arms": ["hero-a", "hero-b", "hero-c"]},
                                    "errors": {"404": "bandit 'hero-banner' not found"}},
    "DELETE /v1/bandits/{bandit_id}": {"errors": {"404": "bandit 'hero-banner' not found"}},
    "GET /v1/bandits/{bandit_id}": {
        "response": {"config": _BANDIT, "state_version": 42, "pulls": 1800, "rewards": 131,
                     "arms": [{"arm": "hero-a", "active": True, "pulls": 910.0, "reward": 58.0, "mean": 0.0637},
                              {"arm": "hero-b", "active": True, "pulls": 890.0, "reward": 73.0, "mean": 0.082}],
                     "quarantine": None},
        "errors": {"404": "bandit 'hero-banner' not found"}},
    "POST /v1/bandits/{bandit_id}/arms": {"request": {"add": ["hero-c"], "remove": ["hero-a"]},
                                          "response": {**_BANDIT, "arms": ["hero-b", "hero-c"]},
                                          "errors": {"404": "bandit 'hero-banner' not found"}},
    "POST /v1/bandits/{bandit_id}/reset": {"response": {"bandit_id": "hero-banner", "state_version": 43,
                                                        "reset": True},
                                           "errors": {"404": "bandit 'hero-banner' not found"}},
    "POST /v1/bandits/{bandit_id}/choose": {"request": {"user_id": USER, "context": {"page": "home", "hour": 9}},
                                            "response": _CHOSEN, "errors": {"404": "bandit 'hero-banner' not found"}},
    "PUT /v1/strategies/{placement}": {
        "request": {"policy": "thompson", "floor": 0.05, "strategies": ["hybrid", "collaborative", "trending"]},
        "response": {"placement": "homepage", "bandit_id": "strategy.homepage",
                     "arms": ["hybrid", "collaborative", "trending"]},
        "errors": {"404": "no bandit 'hero'"}},
    "POST /v1/strategies/{placement}/choose": {
        "errors": {"404": "no strategy bandit for placement 'homepage'; an admin creates it with "
                          "PUT /v1/strategies/homepage"},
        "request": {"user_id": USER},
        "response": {"bandit_id": "strategy.homepage",
                     "decision_id": "strategy.homepage:7932e560d9f34f628da216c4012f92c3", "arm": "hybrid",
                     "explore": False, "policy": "thompson"}},
}


def _error_media(detail: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}, "example": {"detail": detail}}}


def apply(doc: dict[str, Any]) -> dict[str, Any]:
    """Put ``EXAMPLES`` into an OpenAPI document (in place) and give bodiless error answers a body."""
    has_error_body = "ErrorBody" in doc.get("components", {}).get("schemas", {})
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            ex = EXAMPLES.get(f"{method.upper()} {path}", {})
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if body is not None and "request" in ex and not body.get("examples") and "example" not in body:
                body["examples"] = {"example": {"summary": op.get("summary") or "example", "value": ex["request"]}}
            responses = op["responses"]
            for status, detail in (ex.get("errors") or {}).items():
                responses.setdefault(status, {"description": detail})
            for status, resp in responses.items():
                content = resp.get("content")
                if status.startswith("2"):
                    if "response" in ex and content:
                        media = next(iter(content.values()))
                        media.setdefault("example", ex["response"])
                    continue
                if status == "422" or not has_error_body:
                    continue
                detail = (ex.get("errors") or {}).get(status) or ERROR_DETAILS.get(status, resp.get("description", ""))
                if not content:
                    resp["content"] = _error_media(detail)
                elif "application/json" in content and "example" not in content["application/json"]:
                    content["application/json"]["example"] = {"detail": detail}
    return doc


def document_examples(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so the built document carries the examples (built once, then cached)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        app.openapi_schema = apply(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
