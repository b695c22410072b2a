"""The import's pure part: readers with line numbers, column mapping, times, ids, checkpoints; and the
produce loop against a recording producer (acknowledgement before checkpoint, resume, strict)."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from aura.producer import EventProducer
from aura.settings import Settings
from jobs import importrun
from jobs.importer import (
    ColumnMap,
    ImportFileError,
    Row,
    RowError,
    checkpoint_path,
    load_checkpoint,
    parse_time,
    progress_line,
    read_rows,
    row_event_id,
    save_checkpoint,
    to_behavior,
    to_catalog,
)
from jobs.importrun import check_file, run_import

NOW_S = 1_780_000_000


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_parse_time_units() -> None:
    assert parse_time("1700000000") == 1_700_000_000_000
    assert parse_time("1700000000123") == 1_700_000_000_123
    assert parse_time("1700000000.5", "s") == 1_700_000_000_500
    assert parse_time("1700000000", "ms") == 1_700_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # naive = UTC
    assert parse_time("2023-11-14T23:13:20+01:00", "iso") == 1_700_000_000_000
    for bad in ("yesterday", "-5", "nan", "inf"):
        with pytest.raises(ValueError):
            parse_time(bad)
    with pytest.raises(ValueError):
        parse_time("1700000000", "iso")


def test_csv_rows_keep_line_numbers_and_report_broken_ones(tmp_path: Path) -> None:
    p = write(tmp_path, "h.csv", 'user_id,item_id,timestamp\nu1,i1,1\n\nu2,"i\n2",2\nu3,i3\nu4,i4,4\n')
    got = list(read_rows(p))
    assert [(r.line, r.fields["user_id"]) for r in got if isinstance(r, Row)] == [(2, "u1"), (5, "u2"), (7, "u4")]
    errors = [r for r in got if isinstance(r, RowError)]
    assert [(e.line, e.reason) for e in errors] == [(6, "wrong_column_count")]


def test_jsonl_rows(tmp_path: Path) -> None:
    p = write(tmp_path, "h.jsonl", '{"user_id": "u1"}\n\n{broken\n[1, 2]\n{"user_id": "u2"}\n')
    got = list(read_rows(p))
    assert [(r.line, type(r).__name__) for r in got] == [(1, "Row"), (3, "RowError"), (4, "RowError"), (5, "Row")]
    assert [r.reason for r in got if isinstance(r, RowError)] == ["bad_json", "not_an_object"]


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("pytest")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportFileError, match="pyarrow"):
            list(read_rows(write(tmp_path, "h.parquet", "x")))
    else:
        pytest.skip("pyarrow installed: the Parquet reader is used")


def test_to_behavior_maps_columns() -> None:
    cmap = ColumnMap(user_col="customer", item_col="sku", type_col="kind", default_type="view", time_col="at",
                     value_col="stars")
    row = Row(3, {"customer": " c1 ", "sku": "s9", "kind": "", "at": "1700000000", "stars": "4.5"})
    ev = to_behavior(row, cmap)
    assert ev["user_id"] == "c1" and ev["item_id"] == "s9" and ev["event_type"] == "view"
    assert ev["event_time"] == 1_700_000_000_000 and ev["value"] == 4.5
    assert ev["event_id"] == row_event_id(row, "behavior") == to_behavior(Row(99, dict(row.fields)), cmap)["event_id"]
    other = Row(3, {**row.fields, "stars": "5"})
    assert to_behavior(other, cmap)["event_id"] != ev["event_id"]
    with_id = to_behavior(Row(3, {**row.fields, "eid": "e-1"}), ColumnMap(**{**cmap.__dict__, "event_id_col": "eid"}))
    assert with_id["event_id"] == "e-1"


def _stdlib_id(fields: dict[str, Any], kind: str) -> str:
    canon = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return f"imp-{kind[:3]}-" + hashlib.sha256(canon.encode("utf-8")).hexdigest()[:32]


def test_row_event_id_of_strings_is_the_standard_modules() -> None:
    """The orjson spelling of a row of strings hashes to the same id as json.dumps (ids of earlier
    imports still deduplicate a re-run): every control character, quotes, backslashes, non-ASCII,
    keys out of order."""
    texts = ["".join(map(chr, range(0, 0x80))), 'a"b\\c', "caf\u00e9 \u2028 \u2029 \U0001f600", "", " 3.0 "]
    for i, text in enumerate(texts):
        fields = {"z": text, "a": str(i), "\u00e9": text[::-1], "A": "x"}
        assert row_event_id(Row(1, fields), "behavior") == _stdlib_id(fields, "behavior")
    mixed = {"user_id": "u1", "rating": 4.5, "at": 1e16}  # numbers: the standard module as before
    assert row_event_id(Row(1, mixed), "catalog") == _stdlib_id(mixed, "catalog")
    assert row_event_id(Row(1, {"u": "\ud800"}), "behavior").startswith("imp-beh-")  # a lone surrogate


@pytest.mark.parametrize(("fields", "reason"), [
    ({"item_id": "i", "timestamp": "1"}, "missing_user"),
    ({"user_id": "u", "item_id": "i"}, "missing_time"),
    ({"user_id": "u", "item_id": "i", "timestamp": "soon"}, "bad_time"),
    ({"user_id": "u", "item_id": "i", "timestamp": "1", "v": "five"}, "bad_value"),
    ({"user_id": "u", "item_id": "i", "timestamp": "1", "v": "nan"}, "bad_value"),
])
def test_to_behavior_bad_rows_name_line_and_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(RowError) as exc:
        to_behavior(Row(17, fields), ColumnMap(default_type="rating", value_col="v"))
    assert exc.value.line == 17 and exc.value.reason == reason
    assert "line 17" in str(exc.value)


def test_to_behavior_needs_a_type() -> None:
    with pytest.raises(RowError, match="missing_type"):
        to_behavior(Row(2, {"user_id": "u", "timestamp": "1", "t": ""}), ColumnMap(type_col="t"))


def test_to_catalog() -> None:
    cmap = ColumnMap(item_col="sku", extra=("color",))
    ev = to_catalog(Row(2, {"sku": "s1", "title": "Knife", "categories": "home| kitchen ||knives", "price": "12.5",
                            "brand": "", "color": "red"}), cmap, 1_000)
    assert ev["item_id"] == "s1" and ev["event_type"] == "upsert" and ev["event_time"] == 1_000
    assert ev["item"]["categories"] == ["home", "kitchen", "knives"] and ev["item"]["price"] == 12.5
    assert ev["item"]["brand"] is None and ev["item"]["metadata"] == {"color": "red"}
    with pytest.raises(RowError, match="bad_price"):
        to_catalog(Row(3, {"sku": "s", "title": "t", "price": "-1"}), cmap, 1)
    with pytest.raises(RowError, match="missing_title"):
        to_catalog(Row(3, {"sku": "s"}), cmap, 1)


def test_checkpoint_roundtrip_and_refuses_another_file(tmp_path: Path) -> None:
    src = write(tmp_path, "h.csv", "a\n1\n2\n")
    cp = checkpoint_path(src, "events")
    assert load_checkpoint(cp, src) == 0
    save_checkpoint(cp, src, 3, 2)
    assert load_checkpoint(cp, src) == 3
    src.write_text("a\n1\n2\n3\n")
    with pytest.raises(ImportFileError, match="delete it"):
        load_checkpoint(cp, src)


def test_progress_line() -> None:
    assert progress_line(500, 1000, 1.0, 2) == "500/1,000 rows  500/s  ETA 1s  bad 2"
    assert progress_line(500, None, 2.0, 0, run_rows=100) == "500 rows  50/s  bad 0"


class RecordingProducer:
    """confluent-kafka's Producer surface: records produced messages and acknowledges them on flush;
    ``shuffled``: ``poll`` also acknowledges a random part of the waiting ones, in any order (as
    acknowledgements of different partitions come)."""

    def __init__(self, fail: bool = False, shuffled: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.waiting: list[tuple[int, Any]] = []
        self.acked: set[int] = set()
        self.flushes = 0
        self.fail = fail
        self.rnd = random.Random(7) if shuffled else None

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.waiting.append((len(self.sent), on_delivery))
        self.sent.append((topic, key, value))

    def _ack(self, which: list[tuple[int, Any]]) -> None:
        for n, cb in which:
            self.acked.add(n)
            cb("broker down" if self.fail else None, None)

    def poll(self, _t: float) -> int:
        if self.rnd is not None and self.waiting:
            self.rnd.shuffle(self.waiting)
            cut = self.rnd.randint(0, len(self.waiting))
            self._ack(self.waiting[:cut])
            del self.waiting[:cut]
        return 0

    def flush(self, _t: float) -> int:
        self.flushes += 1
        self._ack(self.waiting)
        self.waiting.clear()
        return 0


def history(tmp_path: Path, n: int = 50) -> Path:
    lines = ["user_id,item_id,event_type,timestamp,rating"]
    for i in range(n):
        lines.append(f"u{i % 7},i{i % 11},rating,{NOW_S - 3600 + i},{1 + i % 5}")
    lines[10] = "u1,i1,rating,not-a-time,3"        # line 11
    lines[20] = ",i1,rating,1780000000,3"          # line 21: no user
    lines[30] = "u1,i1,rating,1780000000,5e9"      # line 31: the intake refuses the value
    return write(tmp_path, "h.csv", "\n".join(lines) + "\n")


def importer(fail: bool = False, shuffled: bool = False) -> tuple[EventProducer, RecordingProducer]:
    raw = RecordingProducer(fail, shuffled)
    return EventProducer(Settings().replace(topic_prefix="tunit"), raw), raw


def test_run_skips_bad_rows_with_line_numbers_and_checkpoints_after_ack(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src = history(tmp_path)
    events, raw = importer()
    err = io.StringIO()
    report = run_import(events, src, "events", ColumnMap(type_col="event_type", value_col="rating"), chunk=10,
                        err=err)
    assert [(e.line, e.reason) for e in report.bad] == [(11, "bad_time"), (21, "missing_user"), (31, "bad_value")]
    assert "line 31: bad_value" in err.getvalue()
    assert report.produced == len(raw.sent) == 47 and report.last_line == 51 and not report.stopped
    assert {t for t, _, _ in raw.sent} == {"tunit.events.behavior"}
    assert json.loads(checkpoint_path(src, "events").read_text())["line"] == 51


def test_checkpoint_never_passes_an_unacknowledged_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledgements in any order, chunks in flight: every checkpoint written covers only rows
    whose records were all acknowledged at that moment, and the last one covers the file."""
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src = history(tmp_path, 400)
    events, raw = importer(shuffled=True)
    saved: list[tuple[int, int]] = []
    real = importrun.save_checkpoint

    def spy(cp: Path, source: Path, line: int, produced: int) -> None:
        good_upto = sum(1 for n in range(2, line + 1) if n not in (11, 21, 31))  # records of lines 2..line
        assert set(range(good_upto)) <= raw.acked, f"checkpoint at line {line} before its rows were acknowledged"
        saved.append((line, produced))
        real(cp, source, line, produced)

    monkeypatch.setattr(importrun, "save_checkpoint", spy)
    report = run_import(events, src, "events", ColumnMap(type_col="event_type", value_col="rating"), chunk=10,
                        err=io.StringIO())
    assert report.produced == len(raw.sent) == 397 and saved[-1] == (401, 397)
    assert len(saved) > 10 and [ln for ln, _ in saved] == sorted({ln for ln, _ in saved})
    assert raw.flushes < 10  # the loop waited for acknowledgements only when the window was full


def test_interrupted_then_resumed_produces_each_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src, cmap = history(tmp_path), ColumnMap(type_col="event_type", value_col="rating")
    events, first = importer()
    r1 = run_import(events, src, "events", cmap, chunk=7, stop_after=20, err=io.StringIO())
    assert r1.stopped and r1.produced == 20
    events2, second = importer()
    r2 = run_import(events2, src, "events", cmap, chunk=7, err=io.StringIO())
    assert r2.skipped_before == r1.last_line and r2.produced == 27
    events3, whole = importer()
    run_import(events3, src, "events", cmap, resume=False, err=io.StringIO())
    assert first.sent + second.sent == whole.sent


def test_failed_delivery_keeps_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src = history(tmp_path)
    events, _ = importer(fail=True)
    report = run_import(events, src, "events", ColumnMap(type_col="event_type", value_col="rating"), chunk=10,
                        err=io.StringIO())
    assert report.failed == 10 * importrun.WINDOW and report.produced == 0 and report.exit_code == 1
    assert not checkpoint_path(src, "events").exists()


def test_strict_check_lists_every_bad_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    events, raw = importer()
    bad = check_file(events, history(tmp_path), "events", ColumnMap(type_col="event_type", value_col="rating"),
                     None, NOW_S * 1000)
    assert [e.line for e in bad] == [11, 21, 31] and raw.sent == []


def test_catalog_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src = write(tmp_path, "c.jsonl", '{"item_id": "i1", "title": "A", "categories": "x|y", "price": 3}\n'
                                     '{"item_id": "i2"}\n')
    events, raw = importer()
    report = run_import(events, src, "catalog", ColumnMap(), err=io.StringIO())
    assert report.produced == 1 and [(e.line, e.reason) for e in report.bad] == [(2, "missing_title")]
    assert raw.sent[0][0] == "tunit.catalog.items" and raw.sent[0][1] == b"i1"


def test_purchase_rows_are_one_line_orders() -> None:
    cmap = ColumnMap(type_col="t", quantity_col="q", order_col="o", currency="EUR")
    ev = to_behavior(Row(2, {"user_id": "u", "item_id": "i", "t": "purchase", "timestamp": "1", "price": "9.5",
                             "q": "2", "o": "ord-1"}), cmap)
    assert ev["order"] == {"order_id": "ord-1", "currency": "EUR",
                           "lines": [{"item_id": "i", "quantity": 2, "unit_price": 9.5}]}
    plain = to_behavior(Row(2, {"user_id": "u", "item_id": "i", "t": "purchase", "timestamp": "1", "price": "3"}),
                        ColumnMap(type_col="t"))
    assert plain["order"]["order_id"] == plain["event_id"] and plain["order"]["lines"][0]["quantity"] == 1
    for fields, reason in (({"price": ""}, "missing_price"), ({"price": "x"}, "bad_price"),
                           ({"price": "1", "q": "1.5"}, "bad_quantity"), ({"price": "1", "item_id": ""},
                                                                          "missing_item")):
        with pytest.raises(RowError, match=reason):
            to_behavior(Row(5, {"user_id": "u", "item_id": "i", "t": "purchase", "timestamp": "1", **fields}), cmap)


def test_ctrl_c_checkpoints_what_was_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW_S)
    src = history(tmp_path)
    events, raw = importer()
    real = raw.produce

    def produce(*a: Any, **kw: Any) -> None:
        if len(raw.sent) == 15:
            raise KeyboardInterrupt
        real(*a, **kw)

    monkeypatch.setattr(raw, "produce", produce)
    report = run_import(events, src, "events", ColumnMap(type_col="event_type", value_col="rating"), chunk=10,
                        err=io.StringIO())
    assert report.interrupted and report.exit_code == 130 and report.produced == 15
    assert load_checkpoint(checkpoint_path(src, "events"), src) == report.last_line == 17  # 15 good + header + line 11


def test_csv_jsonl_and_parquet_of_the_same_rows_produce_the_same_records(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The three formats read into the same rows: the same records, byte for byte (deterministic ids
    from the row content), and the same bad rows at the same line numbers (Parquet: row numbers)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr("time.time", lambda: NOW_S)
    cols = ["user_id", "item_id", "event_type", "timestamp", "rating"]
    rows = [[f"u{i % 7}", f"i{i % 11}", "rating", str(NOW_S - 3600 + i), str(1 + i % 5)] for i in range(60)]
    rows[9][0] = ""             # CSV line 11, JSON line 10, Parquet row 10: no user
    rows[30][3] = "yesterday"   # no time
    (tmp_path / "h.csv").write_text("\n".join([",".join(cols)] + [",".join(r) for r in rows]) + "\n")
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(dict(zip(cols, r, strict=True))) + "\n" for r in rows))
    pq.write_table(pa.table({c: [r[k] for r in rows] for k, c in enumerate(cols)}), tmp_path / "h.parquet",
                   row_group_size=16)
    cmap = ColumnMap(type_col="event_type", value_col="rating")
    got = {}
    for name in ("h.csv", "h.jsonl", "h.parquet"):
        events, raw = importer()
        report = run_import(events, tmp_path / name, "events", cmap, chunk=7, err=io.StringIO())
        got[name] = (raw.sent, [e.reason for e in report.bad], [e.line for e in report.bad], report.last_line)
    assert got["h.csv"][0] == got["h.jsonl"][0] == got["h.parquet"][0] and len(got["h.csv"][0]) == 58
    assert got["h.csv"][1] == got["h.jsonl"][1] == got["h.parquet"][1] == ["missing_user", "bad_time"]
    assert got["h.csv"][2] == [11, 32] and got["h.jsonl"][2] == got["h.parquet"][2] == [10, 31]
    assert got["h.parquet"][3] == 60 and got["h.csv"][3] == 61


def test_typed_parquet_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parquet's own types: int64 epoch seconds, timestamps, doubles, nulls; a resumed Parquet import
    continues after the last acknowledged row."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from datetime import UTC, datetime

    monkeypatch.setattr("time.time", lambda: NOW_S)
    n = 40
    table = pa.table({
        "user_id": pa.array([None if i == 5 else f"u{i % 4}" for i in range(n)], pa.string()),
        "item_id": pa.array([f"i{i}" for i in range(n)], pa.string()),
        "at": pa.array([datetime.fromtimestamp(NOW_S - 600 + i, UTC) for i in range(n)], pa.timestamp("ms", tz="UTC")),
        "secs": pa.array([NOW_S - 600 + i for i in range(n)], pa.int64()),
        "stars": pa.array([float(1 + i % 5) for i in range(n)], pa.float64()),
    })
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=8)
    by_time = {}
    for col in ("at", "secs"):
        events, raw = importer()
        report = run_import(events, tmp_path / "t.parquet", "events",
                            ColumnMap(default_type="rating", time_col=col, value_col="stars"), resume=False,
                            err=io.StringIO())
        assert report.produced == n - 1 and [(e.line, e.reason) for e in report.bad] == [(6, "missing_user")]
        by_time[col] = [events.codec.decode(v) for _, _, v in raw.sent]
    assert [(e["event_time"], e["value"], e["user_id"]) for e in by_time["at"]] == [
        (e["event_time"], e["value"], e["user_id"]) for e in by_time["secs"]]
    assert by_time["secs"][0]["event_time"] == datetime.fromtimestamp(NOW_S - 600, UTC)
    cmap = ColumnMap(default_type="rating", time_col="secs", value_col="stars")
    events, first = importer()
    assert run_import(events, tmp_path / "t.parquet", "events", cmap, stop_after=17, chunk=5, resume=False,
                      err=io.StringIO()).stopped
    events, rest = importer()
    resumed = run_import(events, tmp_path / "t.parquet", "events", cmap, chunk=5, err=io.StringIO())
    events, whole = importer()
    run_import(events, tmp_path / "t.parquet", "events", cmap, resume=False, err=io.StringIO())
    assert resumed.skipped_before > 0 and first.sent + rest.sent == whole.sent
