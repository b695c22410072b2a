"""Wire-format throughput: encode+produce and consume+decode, Avro single-object vs JSON (orjson),
in the same run, through the real local Kafka. Prints the median of several runs.

    .venv/bin/python -m bench.codec [--events 50000] [--runs 5]

Events are the demo storefront's behavior events (aura/demo.py). Each run produces every event to
a fresh benchmark topic (one per format, under a throw-away topic prefix, deleted at the end) with
the project's producer settings (aura/bootstrap.py: lz4, linger 5 ms, idempotence), then consumes
them back from the beginning with one confluent-kafka consumer and decodes each record. The
pure-CPU rows (no Kafka) show what the codec alone costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer

from aura import bootstrap, layout
from aura.demo import Storefront
from aura.producer import EventProducer
from aura.settings import get_settings
from infra.migrate import ensure_topics
from schemas.codec import codec


def events(n: int) -> list[dict[str, Any]]:
    shop = Storefront(seed=11)
    now = int(time.time() * 1000)
    out = []
    for ev in shop.events(now - 3600_000):
        ev["event_time"] = min(ev["event_time"], now)
        ev["receive_time"] = now
        out.append(ev)
        if len(out) == n:
            return out
    return out


def produce(producer: Any, topic: str, evs: list[dict[str, Any]], encode: Callable[[dict[str, Any]], bytes]) -> float:
    started = time.perf_counter()
    for i, ev in enumerate(evs):
        value = encode(ev)
        while True:
            try:
                producer.produce(topic, value=value, key=ev["user_id"].encode())
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    elapsed = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered")
    return len(evs) / elapsed


def consume(s: Any, topic: str, n: int, decode: Callable[[bytes], Any]) -> float:
    consumer = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.min.bytes": 1, "queued.max.messages.kbytes": 262144})
    consumer.subscribe([topic])
    # wait for the assignment and the first records before starting the clock
    first: list[Any] = []
    while not first:
        first = [m for m in consumer.consume(min(1000, n), timeout=1.0) if not m.error()]
    started = time.perf_counter()
    seen = 0
    for m in first:
        decode(m.value())
        seen += 1
    while seen < n:
        # ask for no more than what is left: consume() returns as soon as that many arrived
        for m in consumer.consume(min(10000, n - seen), timeout=1.0):
            if m.error():
                continue
            decode(m.value())
            seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def cpu_rate(fn: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()

    base = get_settings()
    tag = f"bench{uuid.uuid4().hex[:8]}"
    settings = {fmt: base.replace(**{"topic_prefix": f"{tag}{fmt}", "topic_partitions": 4})
                for fmt in ("avro", "json")}
    avro = codec("behavior_event")
    evs = events(args.events)
    avro_frames = [avro.encode(e) for e in evs]
    json_frames = [orjson.dumps(e) for e in evs]
    helper = EventProducer(base, producer=None)
    results: dict[str, list[float]] = {k: [] for k in (
        "avro encode (cpu)", "json encode (cpu)", "avro decode (cpu)", "avro decode, epoch ms (cpu)",
        "json decode (cpu)",
        "helper validate+encode+check (cpu)", "avro encode+produce", "json encode+produce",
        "avro consume+decode", "json consume+decode")}
    producer = bootstrap.kafka_producer(base)
    admin = bootstrap.kafka_admin(base)
    topics = []
    try:
        for run in range(args.runs):
            results["avro encode (cpu)"].append(cpu_rate(avro.encode, evs))
            results["json encode (cpu)"].append(cpu_rate(orjson.dumps, evs))
            results["avro decode (cpu)"].append(cpu_rate(avro.decode, avro_frames))
            # as the worker's intake decodes: times as epoch ms (schemas/codec.py)
            results["avro decode, epoch ms (cpu)"].append(
                cpu_rate(lambda f: avro.decode(f, epoch_ms=True), avro_frames))
            results["json decode (cpu)"].append(cpu_rate(orjson.loads, json_frames))
            results["helper validate+encode+check (cpu)"].append(
                cpu_rate(lambda e: helper.encode(dict(e)), evs[: max(1, len(evs) // 5)]))
            for fmt, encode, decode in (("avro", avro.encode, avro.decode), ("json", orjson.dumps, orjson.loads)):
                s = settings[fmt].replace(topic_prefix=f"{settings[fmt].kafka.topic_prefix}r{run}")
                ensure_topics(s, [layout.BEHAVIOR], admin)
                topic = layout.topic(s, layout.BEHAVIOR)
                topics.append(topic)
                results[f"{fmt} encode+produce"].append(produce(producer, topic, evs, encode))
                results[f"{fmt} consume+decode"].append(consume(s, topic, len(evs), decode))
            print(f"run {run + 1}/{args.runs} done", flush=True)
    finally:
        if topics:
            for fut in admin.delete_topics(topics, operation_timeout=30).values():
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001
                    print(f"could not delete a bench topic: {exc}")

    load = os.getloadavg()
    print(f"\n{args.events} demo behavior events per run, {args.runs} runs, medians (events/s); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"mean frame size: avro {statistics.mean(map(len, avro_frames)):.0f} B, "
          f"json {statistics.mean(map(len, json_frames)):.0f} B")
    for name, rates in results.items():
        print(f"  {name:38s} {statistics.median(rates):>10,.0f}   (min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main()
