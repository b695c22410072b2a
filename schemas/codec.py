"""Avro single-object encoding: the wire format of every Kafka record Aura produces or consumes.

Frame: ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form + Avro binary body (Avro specification, "Single object encoding"). Any Avro
library can produce it; see docs/events.md. The codec owns the mapping fingerprint -> writer
schema for the current schemas in ``schemas/avro`` and every released version kept in
``schemas/avro/history``, so records written with an older compatible schema decode into the
current one (Avro schema resolution).
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.validation import ValidationError
from fastavro.validation import validate as validate_datum

from aura.errors import AuraError
from schemas.avrowrite import Unsupported, compile_writer

AVRO_DIR = Path(__file__).resolve().parent / "avro"
MAGIC = b"\xc3\x01"
HEADER_LEN = 10
CONFLUENT_MAGIC = 0  # Confluent framing: 00 + 4-byte big-endian registry schema id + Avro binary
MAX_RECORD_BYTES = 1_048_576


class DecodeError(AuraError, ValueError):
    """A record that cannot be decoded; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def schema_fingerprint(schema: dict[str, Any] | Any) -> bytes:
    """The 8 bytes that follow the magic in a single-object frame."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _plain_times(node: Any) -> Any:
    """``node`` with every ``timestamp-millis`` logical type dropped: those fields read as epoch ms."""
    if isinstance(node, dict):
        return {k: _plain_times(v) for k, v in node.items()
                if not (k == "logicalType" and v == "timestamp-millis")}
    if isinstance(node, list):
        return [_plain_times(v) for v in node]
    return node


def _load(path: Path, epoch_ms: bool = False) -> dict[str, Any]:
    # keep fastavro's "parsed" hint: without it every schemaless_writer/reader call parses the
    # schema again; the fingerprint is the same either way (Parsing Canonical Form has no logical types)
    raw = json.loads(path.read_text())
    return parse_schema(_plain_times(raw) if epoch_ms else raw, _force=True)


class Codec:
    """Encodes records with the current version of one schema and decodes any known version.

    ``decode(data, epoch_ms=True)`` reads ``timestamp-millis`` fields as the ints on the wire rather
    than as ``datetime``: the worker's intake wants epoch ms, and the conversion there and back cost
    about a tenth of its decode time (``bench.codec``) and could lose a millisecond to float rounding."""

    def __init__(self, name: str, max_bytes: int = MAX_RECORD_BYTES) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self.schema = _load(AVRO_DIR / f"{name}.avsc")
        self.fingerprint = schema_fingerprint(self.schema)
        try:
            self._write: Any = compile_writer(self.schema)
        except Unsupported:
            self._write = None  # fastavro for every record
        self.writers: dict[bytes, dict[str, Any]] = {self.fingerprint: self.schema}
        self._plain_schema = _load(AVRO_DIR / f"{name}.avsc", epoch_ms=True)
        self._plain: dict[bytes, dict[str, Any]] = {self.fingerprint: self._plain_schema}
        history = AVRO_DIR / "history"
        for old in sorted(history.glob(f"{name}.v*.avsc")) if history.exists() else []:
            parsed = _load(old)
            fp = schema_fingerprint(parsed)
            if fp not in self.writers:
                self.writers[fp] = parsed
                self._plain[fp] = _load(old, epoch_ms=True)

    def encode(self, record: dict[str, Any]) -> bytes:
        """Frame ``record`` (validated against the current schema) as single-object Avro.

        The compiled writer (schemas/avrowrite.py) first; a value outside its plain cases falls back
        to fastavro, which writes the same bytes or raises."""
        if self._write is not None:
            out = bytearray(MAGIC)
            out += self.fingerprint
            try:
                self._write(out, record)
                return bytes(out)
            except (Unsupported, OverflowError, struct.error):
                pass
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprint)
        try:
            fastavro.schemaless_writer(buf, self.schema, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DecodeError("invalid_record", str(exc)) from exc
        return buf.getvalue()

    def validate(self, record: dict[str, Any]) -> None:
        """Strict type check of ``record`` against the current schema (``encode`` alone lets some wrong
        types through, e.g. a string where an array of strings is expected); raises DecodeError."""
        # the boolean pass first: with raise_errors=True fastavro builds (and json-dumps the datum
        # into) a ValidationError for every union branch that does not match, valid record or not,
        # which is far slower; the raising pass only runs to word the error
        if validate_datum(record, self.schema, raise_errors=False, strict=True):
            return
        try:
            validate_datum(record, self.schema, raise_errors=True, strict=True)
        except ValidationError as exc:
            raise DecodeError("invalid_record", "; ".join(map(str, exc.errors))[:2000] or str(exc)) from exc
        raise DecodeError("invalid_record", f"does not match the {self.name} schema")  # (never both verdicts)

    def decode(self, data: bytes, *, epoch_ms: bool = False) -> dict[str, Any]:
        """Decode a frame into a record of the current schema; raises DecodeError. ``epoch_ms``:
        ``timestamp-millis`` fields as ints (epoch ms) instead of ``datetime``."""
        if data is None:
            raise DecodeError("empty", "no value")
        if len(data) > self.max_bytes:
            raise DecodeError("oversized", f"{len(data)} bytes > {self.max_bytes}")
        if len(data) >= 5 and data[0] == CONFLUENT_MAGIC:
            raise DecodeError("bad_frame", f"Confluent framing (registry schema id {int.from_bytes(data[1:5], 'big')}) "
                              "is not accepted: no schema registry is configured; send single-object encoding")
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("bad_frame", "not Avro single-object encoding (missing C3 01 header)")
        fp = bytes(data[2:HEADER_LEN])
        writer = (self._plain if epoch_ms else self.writers).get(fp)
        if writer is None:
            raise DecodeError("unknown_schema", f"fingerprint {fp.hex()}")
        reader = None if fp == self.fingerprint else self._plain_schema if epoch_ms else self.schema
        buf = io.BytesIO(data[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError,
                OverflowError, MemoryError, StopIteration) as exc:
            raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data) - HEADER_LEN:
            raise DecodeError("trailing_bytes", f"{len(data) - HEADER_LEN - buf.tell()} bytes after the record")
        return record  # type: ignore[return-value]


@cache
def codec(name: str) -> Codec:
    """The process-wide codec of one schema (schemas are immutable at run time)."""
    return Codec(name)


def schema_names() -> list[str]:
    """The names of every current schema (``schemas/avro/NAME.avsc``)."""
    return sorted(p.stem for p in AVRO_DIR.glob("*.avsc"))


@cache
def _by_fingerprint() -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for name in schema_names():
        for fp in codec(name).writers:
            found.setdefault(fp, name)
    return found


def decode_any(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a frame of any known schema (topics that carry several kinds, e.g. decisions).

    Returns ``(schema name, record)``; raises DecodeError like ``Codec.decode``.
    """
    if data is not None and len(data) >= HEADER_LEN and data[:2] == MAGIC:
        name = _by_fingerprint().get(bytes(data[2:HEADER_LEN]))
        if name is not None:
            return name, codec(name).decode(data)
    # let one codec produce the precise reason (oversized, bad_frame, unknown_schema, ...)
    codec("behavior_event").decode(data)
    raise DecodeError("unknown_schema", "no current schema matches")  # pragma: no cover - decode raised
