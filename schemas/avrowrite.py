"""A schema-compiled Avro binary writer: the fast path of ``Codec.encode``.

fastavro's ``schemaless_writer`` picks the branch of every union by running its validator over the
datum, branch by branch; a behavior event has sixteen ``["null", X]`` unions, which made framing
the largest part of the import's CPU (py-spy). ``compile_writer`` turns a parsed schema once into nested
closures that write the same bytes (tests/unit/schemas/test_avrowrite.py compares them with
fastavro's on every schema) choosing each union branch by the Python type of the value.

It only takes the plain cases: a value whose type is not exactly one the schema expects (a datetime
for a timestamp, a bool for a long, an int beyond the type's range, an ambiguous union, enum / fixed
types) raises ``Unsupported``, and the caller falls back to fastavro, whose bytes or error stand. So
the fast path never accepts what fastavro refuses and never writes different bytes.

Libraries considered: cavro (Cython, one release in 2023) and avroc (code generation, unmaintained
since 2021); neither is kept up well enough to put on every produce.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Writer = Callable[[bytearray, Any], None]
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
_MISSING = object()
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


class Unsupported(Exception):  # noqa: N818 - internal signal, never leaves Codec.encode
    """This value (or schema) is outside the fast path: use fastavro."""


def _varint(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _long(out: bytearray, v: Any) -> None:
    if type(v) is not int or not LONG_MIN <= v <= LONG_MAX:
        raise Unsupported
    _varint(out, v)


def _int(out: bytearray, v: Any) -> None:
    if type(v) is not int or not INT_MIN <= v <= INT_MAX:
        raise Unsupported
    _varint(out, v)


def _string(out: bytearray, v: Any) -> None:
    if type(v) is not str:
        raise Unsupported
    try:
        b = v.encode()
    except UnicodeEncodeError:  # a lone surrogate: fastavro words the error
        raise Unsupported from None
    n = len(b)
    if n < 64:
        out.append(n << 1)
    else:
        _varint(out, n)
    out += b


def _bytes(out: bytearray, v: Any) -> None:
    if type(v) is not bytes:
        raise Unsupported
    _varint(out, len(v))
    out += v


def _double(out: bytearray, v: Any) -> None:
    t = type(v)
    if t is not float and t is not int:
        raise Unsupported
    out += _pack_double(v)


def _float(out: bytearray, v: Any) -> None:
    t = type(v)
    if t is not float and t is not int:
        raise Unsupported
    out += _pack_float(v)


def _boolean(out: bytearray, v: Any) -> None:
    if type(v) is not bool:
        raise Unsupported
    out.append(1 if v else 0)


def _null(out: bytearray, v: Any) -> None:
    if v is not None:
        raise Unsupported


PRIMITIVES: dict[str, tuple[Writer, tuple[type, ...]]] = {
    "null": (_null, (type(None),)), "boolean": (_boolean, (bool,)), "int": (_int, (int,)), "long": (_long, (int,)),
    "float": (_float, (float, int)), "double": (_double, (float, int)), "string": (_string, (str,)),
    "bytes": (_bytes, (bytes,)),
}
LOGICAL_OK = {("long", "timestamp-millis"), ("int", "date")}  # plain numbers only; datetimes fall back


def compile_writer(schema: Any, named: dict[str, Any] | None = None) -> Writer:
    """The writer of a parsed schema (``fastavro.parse_schema``); raises Unsupported for a schema
    outside the fast path (enum, fixed, unions whose branches one Python type cannot tell apart)."""
    named = dict(schema.get("__named_schemas", {})) if named is None and isinstance(schema, dict) else named or {}
    return _compile(schema, named, {})


def _types(schema: Any, named: dict[str, Any]) -> tuple[type, ...]:
    """The Python types a union branch accepts (to pick the branch by type)."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema][1]
        return _types(named[schema], named)
    if isinstance(schema, list):
        raise Unsupported
    kind = schema["type"]
    if kind in PRIMITIVES:
        return PRIMITIVES[kind][1]
    if kind in ("record", "map"):
        return (dict,)
    if kind == "array":
        return (list,)  # a tuple in a union is fastavro's ("branch name", value) notation
    raise Unsupported


def _compile(schema: Any, named: dict[str, Any], done: dict[str, Writer]) -> Writer:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return PRIMITIVES[schema][0]
        if schema in done:
            return done[schema]
        if schema not in named:
            raise Unsupported
        return _compile(named[schema], named, done)
    if isinstance(schema, list):
        return _union(schema, named, done)
    kind = schema["type"]
    if kind in PRIMITIVES:
        logical = schema.get("logicalType")
        if logical is not None and (kind, logical) not in LOGICAL_OK:
            raise Unsupported
        return PRIMITIVES[kind][0]
    if kind == "record":
        return _record(schema, named, done)
    if kind == "array":
        return _array(_compile(schema["items"], named, done))
    if kind == "map":
        return _map(_compile(schema["values"], named, done))
    raise Unsupported


def _union(branches: list[Any], named: dict[str, Any], done: dict[str, Writer]) -> Writer:
    if len(branches) == 2 and branches[0] == "null" and branches[1] != "null":
        return _optional(branches[1], named, done)
    by_type: dict[type, tuple[int, Writer]] = {}
    for index, branch in enumerate(branches):
        writer = _compile(branch, named, done)
        for t in _types(branch, named):
            if t in by_type:
                raise Unsupported  # e.g. ["int", "long"]: fastavro's first valid branch depends on the value
            by_type[t] = (index, writer)

    def write(out: bytearray, v: Any) -> None:
        found = by_type.get(type(v))
        if found is None:
            raise Unsupported
        out.append(found[0] << 1)  # small non-negative index: its zigzag varint is one byte
        found[1](out, v)

    if len(branches) > 63:
        raise Unsupported
    return write


def _optional(branch: Any, named: dict[str, Any], done: dict[str, Writer]) -> Writer:
    """``["null", X]``, the common union: index 0 for None, else 1 and X."""
    inner = _compile(branch, named, done)
    accepts = _types(branch, named)
    if accepts == (str,):
        def write_str(out: bytearray, v: Any) -> None:
            if v is None:
                out.append(0)
                return
            if type(v) is not str:
                raise Unsupported
            try:
                b = v.encode()
            except UnicodeEncodeError:
                raise Unsupported from None
            n = len(b)
            if n < 64:
                out.append(2)
                out.append(n << 1)
            else:
                out.append(2)
                _varint(out, n)
            out += b

        return write_str

    def write(out: bytearray, v: Any) -> None:
        if v is None:
            out.append(0)
            return
        if type(v) not in accepts:
            raise Unsupported
        out.append(2)
        inner(out, v)

    return write


def _record(schema: dict[str, Any], named: dict[str, Any], done: dict[str, Writer]) -> Writer:
    fields: list[tuple[str, Writer, Any]] = []  # (name, writer, the default's bytes or _MISSING)

    def write(out: bytearray, v: Any) -> None:
        if type(v) is not dict:
            raise Unsupported
        get = v.get
        present = 0
        for name, writer, default in fields:
            value = get(name, _MISSING)
            if value is _MISSING:
                if default is _MISSING:
                    raise Unsupported
                out += default
            else:
                present += 1
                writer(out, value)
        if present != len(v):
            raise Unsupported  # a key the schema does not have: fastavro refuses the record

    done[schema["name"]] = write  # before the fields: a recursive reference finds it
    for f in schema["fields"]:
        writer = _compile(f["type"], named, done)
        default = f.get("default", _MISSING)
        if default is not _MISSING:
            buf = bytearray()
            try:
                writer(buf, default)
            except (Unsupported, OverflowError, struct.error):
                raise Unsupported from None  # a default fastavro has to interpret
            default = bytes(buf)
        fields.append((f["name"], writer, default))
    return write


def _array(item: Writer) -> Writer:
    def write(out: bytearray, v: Any) -> None:
        if type(v) is not list and type(v) is not tuple:
            raise Unsupported
        if v:
            _varint(out, len(v))
            for x in v:
                item(out, x)
        out.append(0)

    return write


def _map(value: Writer) -> Writer:
    def write(out: bytearray, v: Any) -> None:
        if type(v) is not dict:
            raise Unsupported
        if v:
            _varint(out, len(v))
            for k, x in v.items():
                _string(out, k)
                value(out, x)
        out.append(0)

    return write
