"""Schema evolution guard: checks each current schema in ``schemas/avro`` against its released
versions in ``schemas/avro/history`` and refuses incompatible changes (``aura schema check``).

Two independent checks, both must pass:

* structural: the Avro schema-resolution rules (record fields matched by name or alias; a reader
  field missing from the writer needs a default; numeric promotions int->long->float->double and
  string<->bytes; unions branch by branch; enum symbols; array/map items; fixed sizes) plus policy
  rules of ours (a field's logicalType may not change; the top-level record keeps its name);
* dynamic: records generated from the writer schema are written with fastavro and read back with
  the reader schema (fastavro's own resolution), so what the rules accept really decodes.

Directions: *backward* (records written with a released version are read with the current one)
is checked against EVERY released version, because the codec keeps decoding all of them from
Kafka; *forward* (records written with the current version are read by consumers still on the
last release) is checked against the latest release. Owns no state; the history directory is the
record of what was released (``release`` appends to it).
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import parse_schema, to_parsing_canonical_form
from fastavro.utils import generate_many

from aura.errors import AuraError

AVRO_DIR = Path(__file__).resolve().parent / "avro"
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"}, "float": {"double"},
              "string": {"bytes"}, "bytes": {"string"}}
NAMED = frozenset({"record", "error", "enum", "fixed"})
VERSION_RE = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.avsc$")


class IncompatibleSchema(AuraError, ValueError):
    """A change that would break readers or writers of a released schema."""


# ---------------------------------------------------------------------------------------------
# Structural rules


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _collect(schema: Any, ns: str | None, names: dict[str, tuple[dict[str, Any], str | None]]) -> None:
    """Register every named type of ``schema`` under its full name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, ns, names)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in NAMED:
            full = _fullname(schema["name"], schema.get("namespace", ns))
            inner_ns = full.rsplit(".", 1)[0] if "." in full else None
            names[full] = (schema, inner_ns)
            for f in schema.get("fields", ()):
                _collect(f["type"], inner_ns, names)
        elif t == "array":
            _collect(schema["items"], ns, names)
        elif t == "map":
            _collect(schema["values"], ns, names)
        elif isinstance(t, dict | list):
            _collect(t, ns, names)


class _Side:
    """One schema with its named types, able to dereference names."""

    def __init__(self, schema: Any) -> None:
        self.root = schema
        self.names: dict[str, tuple[dict[str, Any], str | None]] = {}
        _collect(schema, None, self.names)

    def deref(self, schema: Any, ns: str | None) -> tuple[Any, str | None]:
        """``schema`` as a dict (or a list for a union) and the namespace that applies inside it."""
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return {"type": schema}, ns
            for candidate in (_fullname(schema, ns), schema):
                if candidate in self.names:
                    return self.names[candidate]
            raise IncompatibleSchema(f"unknown type name {schema!r}")
        if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
            return self.deref(schema["type"], ns)
        if isinstance(schema, dict) and schema.get("type") in NAMED:
            full = _fullname(schema["name"], schema.get("namespace", ns))
            return schema, full.rsplit(".", 1)[0] if "." in full else None
        if isinstance(schema, dict) and schema.get("type") not in PRIMITIVES | {"array", "map"}:
            return self.deref(schema["type"], ns)
        return schema, ns


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _type_label(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    return str(s.get("type"))


def resolution_errors(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty list: it can)."""
    r_side, w_side = _Side(reader), _Side(writer)
    errors: list[str] = []
    _check(r_side, reader, None, w_side, writer, None, "", errors, set())
    return errors


def _check(rs: _Side, r: Any, r_ns: str | None, ws: _Side, w: Any, w_ns: str | None, path: str,
           errors: list[str], seen: set[tuple[str, str]]) -> None:
    r, r_ns = rs.deref(r, r_ns)
    w, w_ns = ws.deref(w, w_ns)
    where = path or "<root>"
    if isinstance(w, list):  # every branch the writer may use must be readable
        for branch in w:
            _check(rs, r, r_ns, ws, branch, w_ns, path, errors, seen)
        return
    if isinstance(r, list):  # the writer's type must match some reader branch
        for branch in r:
            trial: list[str] = []
            _check(rs, branch, r_ns, ws, w, w_ns, path, trial, set(seen))
            if not trial:
                return
        errors.append(f"{where}: writer type {_type_label(w)} matches no branch of the reader's union")
        return
    rt, wt = r["type"], w["type"]
    if rt in PRIMITIVES and wt in PRIMITIVES:
        if rt != wt and rt not in PROMOTIONS.get(wt, ()):
            errors.append(f"{where}: {wt} cannot be read as {rt}")
        elif r.get("logicalType") != w.get("logicalType"):
            errors.append(f"{where}: logicalType changed from {w.get('logicalType')} to {r.get('logicalType')}")
        return
    if rt != wt and not (rt in ("record", "error") and wt in ("record", "error")):
        errors.append(f"{where}: {wt} cannot be read as {rt}")
        return
    if rt == "array":
        _check(rs, r["items"], r_ns, ws, w["items"], w_ns, f"{path}[]", errors, seen)
    elif rt == "map":
        _check(rs, r["values"], r_ns, ws, w["values"], w_ns, f"{path}{{}}", errors, seen)
    elif rt in NAMED:
        r_name, w_name = _short(r["name"]), _short(w["name"])
        if r_name != w_name and w_name not in {_short(a) for a in r.get("aliases", ())}:
            errors.append(f"{where}: named type {w_name} cannot be read as {r_name}")
            return
        if rt == "fixed":
            if r["size"] != w["size"]:
                errors.append(f"{where}: fixed size {w['size']} cannot be read as {r['size']}")
        elif rt == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                errors.append(f"{where}: enum symbols {missing} unknown to the reader, which has no default")
        else:
            key = (_fullname(r["name"], r_ns), _fullname(w["name"], w_ns))
            if key in seen:
                return
            seen.add(key)
            w_fields = {f["name"]: f for f in w["fields"]}
            for rf in r["fields"]:
                fpath = f"{path}.{rf['name']}" if path else rf["name"]
                wf = next((w_fields[n] for n in (rf["name"], *rf.get("aliases", ())) if n in w_fields), None)
                if wf is None:
                    if "default" not in rf:
                        errors.append(f"{fpath}: field missing from the writer and the reader has no default")
                    continue
                _check(rs, rf["type"], r_ns, ws, wf["type"], w_ns, fpath, errors, seen)


# ---------------------------------------------------------------------------------------------
# Dynamic round trips


def sample_records(schema: Any, n: int = 40, seed: int = 0) -> list[Any]:
    """``n`` random records of ``schema`` (deterministic for a seed; the global RNG is restored)."""
    state = random.getstate()
    random.seed(seed)
    try:
        return list(generate_many(parse_schema(schema, _force=True), n))
    finally:
        random.setstate(state)


def roundtrip_errors(reader: Any, writer: Any, n: int = 40) -> list[str]:
    """Write samples of ``writer`` and read them with ``reader``; the first failure, if any."""
    w = parse_schema(writer, _force=True)
    r = parse_schema(reader, _force=True)
    for i, record in enumerate(sample_records(writer, n)):
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, w, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, w, r)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return [f"sample {i}: {type(exc).__name__}: {exc}"[:500]]
    return []


def compatibility_errors(old: Any, new: Any, *, backward: bool = True, forward: bool = True) -> list[str]:
    """Problems of changing ``old`` into ``new``: backward = old data read by new code,
    forward = new data read by old code."""
    try:
        parse_schema(new, _force=True)
    except Exception as exc:  # noqa: BLE001 - fastavro raises several kinds for a bad schema
        return [f"invalid schema: {exc}"]
    if old.get("name") != new.get("name") or old.get("namespace") != new.get("namespace"):
        return [f"top-level name changed from {old.get('namespace')}.{old.get('name')} to "
                f"{new.get('namespace')}.{new.get('name')}"]
    errors: list[str] = []
    for label, enabled, reader, writer in (("backward", backward, new, old), ("forward", forward, old, new)):
        if not enabled:
            continue
        try:
            problems = resolution_errors(reader, writer) or roundtrip_errors(reader, writer)
        except IncompatibleSchema as exc:
            problems = [str(exc)]
        errors += [f"{label}: {p}" for p in problems]
    return errors


# ---------------------------------------------------------------------------------------------
# The current schemas against their history


@dataclass
class CheckResult:
    name: str
    status: str  # unchanged | compatible | incompatible | unreleased
    latest: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "incompatible"


def releases(name: str, avro_dir: Path = AVRO_DIR) -> list[tuple[int, Path]]:
    """Released versions of ``name``, oldest first."""
    found = []
    for p in (avro_dir / "history").glob(f"{name}.v*.avsc"):
        m = VERSION_RE.match(p.name)
        if m and m["name"] == name:
            found.append((int(m["version"]), p))
    return sorted(found)


def canonical(schema: Any) -> str:
    return to_parsing_canonical_form(parse_schema(schema, _force=True))


def check_schema(name: str, avro_dir: Path = AVRO_DIR) -> CheckResult:
    current = json.loads((avro_dir / f"{name}.avsc").read_text())
    history = releases(name, avro_dir)
    if not history:
        return CheckResult(name, "unreleased")
    latest_version, latest_path = history[-1]
    latest = json.loads(latest_path.read_text())
    try:
        canonical(current)  # parses: an invalid schema is refused here
        # not the canonical form: it drops defaults, aliases and docs, which matter for resolution
        same = json.dumps(latest, sort_keys=True) == json.dumps(current, sort_keys=True)
    except Exception as exc:  # noqa: BLE001 - an unparsable current schema is refused, not a crash
        return CheckResult(name, "incompatible", latest_version, [f"invalid schema: {exc}"])
    if same:
        return CheckResult(name, "unchanged", latest_version)
    problems: list[str] = []
    for version, path in history:
        old = json.loads(path.read_text())
        for p in compatibility_errors(old, current, backward=True, forward=version == latest_version):
            problems.append(f"v{version} -> current, {p}")
    return CheckResult(name, "incompatible" if problems else "compatible", latest_version, problems)


def check_all(avro_dir: Path = AVRO_DIR, names: list[str] | None = None) -> list[CheckResult]:
    names = names or sorted(p.stem for p in avro_dir.glob("*.avsc"))
    return [check_schema(n, avro_dir) for n in names]


def release(name: str, avro_dir: Path = AVRO_DIR) -> Path | None:
    """Freeze the current schema as the next history version (None: nothing changed).

    Refuses (IncompatibleSchema) a schema that fails ``check_schema``.
    """
    result = check_schema(name, avro_dir)
    if not result.ok:
        raise IncompatibleSchema("; ".join(result.problems))
    if result.status == "unchanged":
        return None
    target = avro_dir / "history" / f"{name}.v{(result.latest or 0) + 1}.avsc"
    target.parent.mkdir(exist_ok=True)
    target.write_text((avro_dir / f"{name}.avsc").read_text())
    return target
