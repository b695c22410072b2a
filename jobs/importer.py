"""Importing a shop's history: reading CSV / JSON-lines (/ Parquet) rows and mapping them to events.

Owns the pure part of ``aura import``: row readers that keep each row's line number, the column
mapping of a row to a behavior or catalog event, deterministic event ids from a row's content (so
that a re-run or a resumed run is deduplicated by the intake's event-id dedup instead of counted
twice), the checkpoint file of a resumable import and the progress line. Producing is the caller's
(aura/cli/tools.py with aura/producer.py), so the events go through the real intake: schema validation,
dedup, dead letters.

The standard ``csv`` and ``json`` modules read the files; pandas/polars were not used because rows
are streamed one at a time with their line numbers, which neither gives without loading the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from aura.errors import AuraError

FORMATS = ("csv", "jsonl", "parquet")
TIME_UNITS = ("auto", "s", "ms", "iso")


class RowError(AuraError):
    """One row that cannot become an event: its line number and why."""

    def __init__(self, line: int, reason: str, detail: str = "") -> None:
        super().__init__(f"line {line}: {reason}{': ' + detail if detail else ''}")
        self.line, self.reason, self.detail = line, reason, detail


class ImportFileError(AuraError):
    """The file as a whole cannot be read (unknown format, Parquet without pyarrow)."""


class Row(NamedTuple):
    """One record of the file (a tuple: built once per row on the hot path)."""

    line: int                 # 1-based line of the file where the row ends (Parquet: the row's number)
    fields: dict[str, Any]


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ImportFileError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    return "csv"


def read_rows(path: str | Path, fmt: str | None = None, delimiter: str = ",") -> Iterator[Row | RowError]:
    """Every row of the file in order, or the RowError of a row that is not even a record."""
    fmt = detect_format(path, fmt)
    if fmt == "csv":
        yield from _read_csv(path, delimiter)
    elif fmt == "jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_parquet(path)


def _read_csv(path: str | Path, delimiter: str) -> Iterator[Row | RowError]:
    with open(path, newline="", encoding="utf-8", errors="strict") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        header = [h.strip() for h in header]
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield RowError(reader.line_num, "unreadable_row", str(exc)[:200])
                continue
            if not values:
                continue
            if len(values) != len(header):
                yield RowError(reader.line_num, "wrong_column_count", f"{len(values)} values for {len(header)} columns")
                continue
            yield Row(reader.line_num, dict(zip(header, values, strict=True)))


def _read_jsonl(path: str | Path) -> Iterator[Row | RowError]:
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                yield RowError(n, "bad_json", str(exc)[:200])
                continue
            if not isinstance(doc, dict):
                yield RowError(n, "not_an_object", type(doc).__name__)
                continue
            yield Row(n, doc)


def _read_parquet(path: str | Path) -> Iterator[Row | RowError]:
    try:
        import pyarrow.parquet as pq  # optional: only when pyarrow is installed
    except ImportError as exc:
        raise ImportFileError("Parquet needs pyarrow, which is not installed; export CSV or JSON lines") from exc
    n = 0
    for batch in pq.ParquetFile(path).iter_batches():
        for rec in batch.to_pylist():
            n += 1
            yield Row(n, rec)


@dataclass(frozen=True)
class ColumnMap:
    """Which column holds what (``aura import`` flags)."""

    user_col: str = "user_id"
    item_col: str = "item_id"
    type_col: str | None = None
    default_type: str | None = None
    time_col: str = "timestamp"
    time_unit: str = "auto"
    value_col: str | None = None
    event_id_col: str | None = None
    # purchases: each row is one order of one line (price x quantity); price_col is shared with catalog
    quantity_col: str | None = None
    order_col: str | None = None
    currency: str = "USD"
    # catalog
    title_col: str = "title"
    categories_col: str | None = "categories"
    category_sep: str = "|"
    price_col: str | None = "price"
    brand_col: str | None = "brand"
    extra: tuple[str, ...] = field(default_factory=tuple)


def _text(row: Row, col: str | None, required: bool, what: str) -> str | None:
    value = row.fields.get(col) if col else None
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(row.line, f"missing_{what}", f"column {col!r} is empty or absent")
        return None
    return str(value).strip()


def parse_time(raw: Any, unit: str = "auto") -> int:
    """Epoch seconds / milliseconds or ISO-8601 to epoch ms; ``auto`` tells s from ms by magnitude
    (below 10^11 is seconds: 10^11 s is the year 5138, 10^11 ms is 1973)."""
    if unit not in TIME_UNITS:
        raise ValueError(f"unknown time unit {unit!r}")
    if isinstance(raw, datetime):
        return _iso_ms(raw)
    text = str(raw).strip()
    if unit == "iso":
        return _iso_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    try:
        number = float(text)
    except ValueError:
        if unit != "auto":
            raise
        return _iso_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{text} is not an epoch time")
    if unit == "s" or (unit == "auto" and number < 1e11):
        return int(round(number * 1000))
    return int(number)


def _iso_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # naive times are UTC
    return int(dt.timestamp() * 1000)


def row_event_id(row: Row, kind: str) -> str:
    """A deterministic id from the row's content: the same row always gives the same event id.

    The id hashes the row as ``json.dumps(sort_keys, ensure_ascii=False, compact)``; a row of
    strings only (every CSV row) is serialised by orjson, which writes the same bytes for strings
    (tests/unit/jobs/test_importer.py compares them) at C speed; other values (numbers, times of
    JSON lines and Parquet) keep the standard module, whose float and time spellings differ."""
    fields = row.fields
    canon: bytes | None = None
    if all(type(v) is str for v in fields.values()):
        try:
            canon = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate: the standard module's spelling below
            canon = None
    if canon is None:
        canon = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str,
                           separators=(",", ":")).encode("utf-8", "surrogatepass")
    return f"imp-{kind[:3]}-" + hashlib.sha256(canon).hexdigest()[:32]


def to_behavior(row: Row, cmap: ColumnMap) -> dict[str, Any]:
    """The behavior event of one row; raises RowError naming the line and the column."""
    user = _text(row, cmap.user_col, True, "user")
    item = _text(row, cmap.item_col, False, "item")
    etype = _text(row, cmap.type_col, False, "type") if cmap.type_col else None
    etype = etype or cmap.default_type
    if not etype:
        raise RowError(row.line, "missing_type", f"column {cmap.type_col!r} is empty and no --default-type")
    raw_time = _text(row, cmap.time_col, True, "time")
    try:
        event_time = parse_time(raw_time, cmap.time_unit)
    except (ValueError, OverflowError, OSError) as exc:
        raise RowError(row.line, "bad_time", f"{cmap.time_col}={str(raw_time)[:40]!r}: {exc}") from None
    value = None
    raw_value = _text(row, cmap.value_col, False, "value") if cmap.value_col else None
    if raw_value is not None:
        try:
            value = float(raw_value)
        except ValueError:
            raise RowError(row.line, "bad_value", f"{cmap.value_col}={raw_value[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise RowError(row.line, "bad_value", f"{cmap.value_col}={raw_value[:40]!r} is not finite")
    event_id = _text(row, cmap.event_id_col, True, "event_id") if cmap.event_id_col else row_event_id(row, "behavior")
    event = {"event_id": event_id, "event_type": etype, "user_id": user, "item_id": item,
             "event_time": event_time, "value": value, "context": {}, "properties": {"source": "import"}}
    if etype == "purchase":
        event["order"] = _order(row, cmap, item, event_id)
    return event


def _number(row: Row, col: str | None, what: str, default: float | None = None) -> float:
    raw = _text(row, col, default is None, what)
    if raw is None:
        return float(default)  # type: ignore[arg-type]
    try:
        number = float(raw)
    except ValueError:
        raise RowError(row.line, f"bad_{what}", f"{col}={raw[:40]!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise RowError(row.line, f"bad_{what}", f"{col}={raw[:40]!r}")
    return number


def _order(row: Row, cmap: ColumnMap, item: str | None, event_id: str) -> dict[str, Any]:
    """A purchase row's order: one line of ``item`` at the price column's price, quantity column (1)."""
    if item is None:
        raise RowError(row.line, "missing_item", f"a purchase needs column {cmap.item_col!r}")
    price = _number(row, cmap.price_col, "price")
    quantity = _number(row, cmap.quantity_col, "quantity", 1.0) if cmap.quantity_col else 1.0
    if not quantity.is_integer():
        raise RowError(row.line, "bad_quantity", f"{cmap.quantity_col}={quantity} is not a whole number")
    order_id = _text(row, cmap.order_col, False, "order") if cmap.order_col else None
    return {"order_id": order_id or event_id, "currency": cmap.currency,
            "lines": [{"item_id": item, "quantity": int(quantity), "unit_price": price}]}


def to_catalog(row: Row, cmap: ColumnMap, default_time_ms: int) -> dict[str, Any]:
    """The catalog upsert of one row (title, categories split on ``category_sep``, price, brand;
    the ``extra`` columns go to metadata)."""
    item = _text(row, cmap.item_col, True, "item")
    title = _text(row, cmap.title_col, True, "title")
    categories = [c.strip() for c in (_text(row, cmap.categories_col, False, "categories") or "").split(
        cmap.category_sep) if c.strip()]
    price = None
    raw_price = _text(row, cmap.price_col, False, "price")
    if raw_price is not None:
        try:
            price = float(raw_price)
        except ValueError:
            raise RowError(row.line, "bad_price", f"{cmap.price_col}={raw_price[:40]!r} is not a number") from None
        if not math.isfinite(price) or price < 0:
            raise RowError(row.line, "bad_price", f"{cmap.price_col}={raw_price[:40]!r}")
    raw_time = _text(row, cmap.time_col, False, "time")
    try:
        event_time = parse_time(raw_time, cmap.time_unit) if raw_time else default_time_ms
    except (ValueError, OverflowError, OSError) as exc:
        raise RowError(row.line, "bad_time", f"{cmap.time_col}={str(raw_time)[:40]!r}: {exc}") from None
    metadata = {c: str(row.fields[c]) for c in cmap.extra if row.fields.get(c) not in (None, "")}
    event_id = _text(row, cmap.event_id_col, True, "event_id") if cmap.event_id_col else row_event_id(row, "catalog")
    return {"event_id": event_id, "event_type": "upsert", "item_id": item, "event_time": event_time,
            "item": {"title": title, "categories": categories, "tags": [], "brand": _text(row, cmap.brand_col, False,
                     "brand"), "price": price, "currency": "USD", "stock": None, "available": True, "text": None,
                     "url": None, "image_url": None, "published_at": None, "metadata": metadata}}


# --- checkpoint -----------------------------------------------------------------------------------

def checkpoint_path(path: str | Path, kind: str) -> Path:
    p = Path(path)
    return p.with_name(f"{p.name}.{kind}.aura-import.json")


def load_checkpoint(cp: Path, source: str | Path) -> int:
    """The last line produced and acknowledged by a previous run of the same file (0: none). A
    checkpoint of another file (different size) is refused: resuming it would skip wrong rows."""
    if not cp.exists():
        return 0
    doc = json.loads(cp.read_text())
    size = os.path.getsize(source)
    if doc.get("size") != size:
        raise ImportFileError(f"checkpoint {cp} is for a file of {doc.get('size')} bytes, this one has {size}; "
                              "delete it to import from the start")
    return int(doc.get("line", 0))


def save_checkpoint(cp: Path, source: str | Path, line: int, produced: int) -> None:
    """Atomically record that every row up to ``line`` is produced and acknowledged."""
    tmp = cp.with_name(cp.name + ".tmp")
    tmp.write_text(json.dumps({"file": str(source), "size": os.path.getsize(source), "line": line,
                               "produced": produced}))
    os.replace(tmp, cp)


def progress_line(done: int, total: int | None, elapsed_s: float, bad: int, run_rows: int | None = None) -> str:
    """``12,000/100,000 rows  8,431/s  ETA 10s  bad 3`` (no ETA when the total is unknown). ``done``
    counts from the file's start, ``run_rows`` (default ``done``) the rows of this run, for the rate."""
    rate = (done if run_rows is None else run_rows) / elapsed_s if elapsed_s > 0 else 0.0
    eta = ""
    if total and rate > 0:
        eta = f"  ETA {max(0.0, (total - done) / rate):.0f}s"
    of = f"/{total:,}" if total else ""
    return f"{done:,}{of} rows  {rate:,.0f}/s{eta}  bad {bad}"


def count_lines(path: str | Path) -> int:
    """Lines of the file (a cheap total for the ETA of CSV / JSON lines)."""
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n
