"""serving/query.py: the query parameters a route knows (its whole dependency tree, by alias), and the
422 an unknown one gets, with FastAPI's shape; over a small app with no stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from serving.handlers import install_handlers
from serving.query import KNOWN_QUERY, known_names, unknown_errors


class Window:
    def __init__(self, from_ms: int | None = Query(None, alias="from"), to_ms: int | None = Query(None, alias="to")):
        self.from_ms, self.to_ms = from_ms, to_ms


class Page(BaseModel):
    cursor: int = 0
    size: int = 10


router = APIRouter()


@router.get("/items/{item_id}")
async def item(item_id: str, w: Annotated[Window, Depends()], limit: int = 10,
               category: Annotated[list[str] | None, Query()] = None) -> dict:
    return {"item": item_id, "limit": limit, "from": w.from_ms, "category": category}


@router.get("/pages")
async def pages(page: Annotated[Page, Query()]) -> dict:
    return page.model_dump()


def client() -> TestClient:
    app = FastAPI()
    install_handlers(app)
    app.include_router(router, dependencies=[KNOWN_QUERY])
    return TestClient(app)


def test_known_names_cover_the_dependency_tree_by_alias_and_query_models():
    by_path = {r.path: r for r in router.routes}
    assert known_names(by_path["/items/{item_id}"]) == {"from", "to", "limit", "category"}
    assert known_names(by_path["/pages"]) == {"cursor", "size"}


def test_unknown_errors_name_each_unknown_parameter_once():
    errors = unknown_errors(["limit", "limt", "x", "limt"], frozenset({"limit"}))
    assert [e["loc"] for e in errors] == [["query", "limt"], ["query", "x"]]
    assert errors[0]["type"] == "extra_forbidden" and "'limt'" in errors[0]["msg"] and "limit" in errors[0]["msg"]
    assert unknown_errors([], frozenset()) == []


def test_a_route_refuses_an_unknown_parameter_and_accepts_known_ones():
    c = client()
    ok = c.get("/items/a?limit=3&from=5&category=x&category=y")
    assert ok.status_code == 200 and ok.json() == {"item": "a", "limit": 3, "from": 5, "category": ["x", "y"]}
    assert c.get("/pages?cursor=2").json() == {"cursor": 2, "size": 10}
    bad = c.get("/items/a?limit=3&limt=4&from_ms=1")
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["detail"]] == [["query", "limt"], ["query", "from_ms"]]
    assert c.get("/pages?page=1").status_code == 422  # the model's name is not itself a parameter
    assert c.get("/items/a?limit=x&nope=1").json()["detail"][0]["loc"] == ["query", "nope"]  # unknown first
