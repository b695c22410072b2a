"""The ingest path of every event the API produces: request body -> validated Avro frames -> Kafka.

Owns how an event request is refused or accepted, for the ingest routes (``serving/routes/events.py``)
and for the routes that produce events themselves (tracking, catalog writes):

- the body is size-checked while it is read (413), parsed and validated with the route's request
  model, then with the stream's own semantic checks (``schemas/events.py``); every field error of a
  body (a batch is all-or-nothing) becomes one FastAPI-style 422 ``detail`` entry;
- the records are framed as Avro single-object records and produced with the API's producer; the
  answer waits until Kafka acknowledged every record (503 if it does not within
  ``ingest_ack_timeout_s``; a retry is safe, event ids de-duplicate);
- the ``ingest_count`` metrics hash (outcomes per kind, 422s by error type).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Producer
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from aura import layout
from aura.errors import AuraError
from schemas.codec import DecodeError, codec
from schemas.events import InvalidEvent, partition_key, validate
from serving.state import ApiState

log = logging.getLogger(__name__)


class IngestError(AuraError):
    """An answer other than 202: status code, FastAPI-style ``detail`` and the metrics outcome."""

    def __init__(self, status: int, detail: Any, outcome: str, error_types: list[str] | None = None) -> None:
        super().__init__(str(detail)[:200])
        self.status = status
        self.detail = detail
        self.outcome = outcome
        self.error_types = error_types or []


def as_millis(value: Any) -> Any:
    """A date-time as epoch milliseconds (the Avro ``timestamp-millis``); any other value as it is."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def to_avro(model: BaseModel, now_ms: int) -> dict[str, Any]:
    """A validated request model as the Avro record (event times in epoch ms, receive_time now)."""
    record = model.model_dump()
    record["event_time"] = as_millis(record["event_time"])
    if isinstance(record.get("item"), dict):
        record["item"]["published_at"] = as_millis(record["item"].get("published_at"))
    record["receive_time"] = now_ms
    return record


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, f"body of {declared} bytes exceeds the {limit} byte limit", "too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body exceeds the {limit} byte limit", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _pydantic_errors(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [{"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)]


def parse_events(body: bytes, model: type[BaseModel], *, many: bool | None, max_batch: int,
                 schema: str, now_ms: int) -> list[tuple[bytes, bytes]]:
    """Body -> framed (key, value) records; raises IngestError (422 with every field error, 413).

    ``many``: True for a JSON array, False for one object, None for either.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(422, [{"loc": ["body"], "msg": f"invalid JSON (or not UTF-8): {exc}",
                                 "type": "json_invalid"}], "rejected", ["json_invalid"]) from exc
    is_list = isinstance(doc, list)
    if many is True and not is_list:
        raise IngestError(422, [{"loc": ["body"], "msg": "expected a JSON array of events", "type": "list_type"}],
                          "rejected", ["list_type"])
    if many is False and is_list:
        raise IngestError(422, [{"loc": ["body"], "msg": "expected one event object (use /batch for arrays)",
                                 "type": "model_type"}], "rejected", ["model_type"])
    docs = doc if is_list else [doc]
    if len(docs) > max_batch:
        raise IngestError(413, f"{len(docs)} events exceed the batch limit of {max_batch}", "too_large")
    if not docs:
        raise IngestError(422, [{"loc": ["body"], "msg": "empty batch", "type": "too_short"}], "rejected",
                          ["too_short"])
    c = codec(schema)
    errors: list[dict[str, Any]] = []
    framed: list[tuple[bytes, bytes]] = []
    adapter = TypeAdapter(model)
    for i, item in enumerate(docs):
        prefix: tuple[Any, ...] = (i,) if is_list else ()
        try:
            event = adapter.validate_python(item)
        except ValidationError as exc:
            errors += _pydantic_errors(exc, prefix)
            continue
        record = to_avro(event, now_ms)
        try:
            validate(schema, record, now_ms)  # the same semantic checks the stream applies
            value = c.encode(record)
        except InvalidEvent as exc:
            loc = exc.field.split(".") if exc.field else []
            errors.append({"loc": ["body", *prefix, *loc], "msg": exc.detail or exc.reason, "type": exc.reason})
            continue
        except DecodeError as exc:
            errors.append({"loc": ["body", *prefix], "msg": exc.detail, "type": exc.reason})
            continue
        if len(value) > c.max_bytes:
            raise IngestError(413, f"event {i} is {len(value)} bytes encoded, over {c.max_bytes}", "too_large")
        framed.append((partition_key(schema, record), value))
    if errors:
        raise IngestError(422, errors, "rejected", [e["type"] for e in errors])
    return framed


async def produce_acknowledged(producer: Producer, topic: str, records: list[tuple[bytes, bytes]],
                               timeout_s: float) -> list[tuple[int, int]]:
    """Produce ``records`` and wait until Kafka acknowledged all of them (IngestError 503 if not);
    returns where each landed, (partition, offset) in the order of ``records``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    pending = len(records)
    failures: list[str] = []
    placed: list[tuple[int, int]] = [(-1, -1)] * len(records)

    def settle(err: Any, i: int, where: tuple[int, int]) -> None:
        nonlocal pending
        pending -= 1
        placed[i] = where
        if err is not None:
            failures.append(str(err))
        if pending == 0 and not done.done():
            done.set_result(None)

    def on_delivery(i: int) -> Any:
        def delivered(err: Any, msg: Any) -> None:  # runs in whichever thread polls the producer
            where = (-1, -1) if err is not None or msg is None else (msg.partition(), msg.offset())
            try:
                loop.call_soon_threadsafe(settle, err, i, where)
            except RuntimeError:  # the loop is gone (an acknowledgement after shutdown): nobody waits
                pass
        return delivered

    deadline = loop.time() + timeout_s
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery(i))
                break
            except BufferError:
                if loop.time() > deadline:
                    raise IngestError(503, "the producer queue is full", "unavailable") from None
                producer.poll(0)
                await asyncio.sleep(0.01)
    while not done.done():
        producer.poll(0)  # serve delivery callbacks without blocking the event loop
        if done.done():
            break
        if loop.time() > deadline:
            raise IngestError(503, f"Kafka did not acknowledge {pending} of {len(records)} events in "
                              f"{timeout_s}s; retry (event ids de-duplicate)", "unavailable")
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=0.005)
        except TimeoutError:
            pass
    if failures:
        raise IngestError(503, f"{len(failures)} events failed delivery: {failures[0]}", "unavailable")
    return placed


async def count(state: ApiState, kind: str, outcome: str, n: int = 1, error_types: list[str] | None = None) -> None:
    """Bump the ingest metrics (one pipeline); a Redis failure never fails the request."""
    try:
        pipe = state.redis.pipeline(transaction=False)
        key = state.keys.ingest_count()
        pipe.hincrby(key, f"{kind}:{outcome}", n)
        for t in sorted(set(error_types or ())):
            pipe.hincrby(key, f"{kind}:{outcome}:{t}", sum(1 for e in error_types or () if e == t))
        await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - metrics are best effort
        log.warning("ingest metrics not recorded: %s", exc)


def _json(doc: Any, status: int) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


async def ingest(request: Request, state: ApiState, *, kind: str, schema: str, spec: layout.TopicSpec,
                 model: type[BaseModel], many: bool | None) -> Response:
    """One ingest request, answered: 202 with the count Kafka acknowledged, or the IngestError's answer
    (``many``: True for a JSON array, False for one object, None for either)."""
    s = state.settings
    try:
        body = await read_body(request, s.ingest.max_body_bytes)
        records = parse_events(body, model, many=many, max_batch=s.ingest.max_batch if many is not False else 1,
                               schema=schema, now_ms=int(time.time() * 1000))
        if state.producer is None:
            raise IngestError(503, "no Kafka producer", "unavailable")
        await produce_acknowledged(state.producer, layout.topic(s, spec), records, s.ingest.ack_timeout_s)
    except IngestError as exc:
        await count(state, kind, exc.outcome, error_types=exc.error_types)
        return _json({"detail": exc.detail}, exc.status)
    await count(state, kind, "accepted", len(records))
    return _json({"accepted": len(records)}, 202)

