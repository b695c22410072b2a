"""Schema evolution: per released schema, old-written records read by the current schema and the
other way round; incompatible changes are refused by ``aura schema check`` and ``release``."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any

import fastavro
import pytest

from aura.cli import main as aura_main
from aura.errors import AuraError
from schemas import compat
from schemas.compat import (
    AVRO_DIR,
    IncompatibleSchema,
    check_all,
    compatibility_errors,
    releases,
    resolution_errors,
    sample_records,
)

RELEASED = sorted({p.name.split(".v")[0] for p in (AVRO_DIR / "history").glob("*.v*.avsc")})


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def rewrite(records: list, writer: dict, reader: dict) -> list:
    w, r = fastavro.parse_schema(writer, _force=True), fastavro.parse_schema(reader, _force=True)
    out = []
    for rec in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, rec)
        buf.seek(0)
        out.append(fastavro.schemaless_reader(buf, w, r))
    return out


def test_released_set_is_what_we_expect():
    assert {"behavior_event", "dead_letter", "identity_event", "catalog_item", "experiment_exposure",
            "campaign_delivery"} <= set(RELEASED)


def known_part(after: Any, before: Any) -> Any:
    """``after`` cut to the keys ``before`` had, recursively: a nested record of the new schema carries
    the fields it added (with their defaults) beside the old ones, which must come through unchanged."""
    if isinstance(after, dict) and isinstance(before, dict):
        return {k: known_part(after[k], before[k]) if k in after else None for k in before}
    if isinstance(after, list) and isinstance(before, list) and len(after) == len(before):
        return [known_part(a, b) for a, b in zip(after, before, strict=True)]
    return after


@pytest.mark.parametrize("name", RELEASED)
def test_every_released_version_is_read_by_the_current_schema_and_back(name):
    current = load(AVRO_DIR / f"{name}.avsc")
    for version, path in releases(name):
        old = load(path)
        assert compatibility_errors(old, current) == [], f"v{version}"
        # old -> new: every field the old writer had comes through unchanged; new fields get defaults
        old_samples = sample_records(old, 25, seed=version)
        for before, after in zip(old_samples, rewrite(old_samples, old, current), strict=True):
            for f in old["fields"]:
                if f["name"] in after and "logicalType" not in json.dumps(f["type"]):
                    assert known_part(after[f["name"]], before[f["name"]]) == before[f["name"]], f["name"]
        # new -> old: the old reader sees the fields it knows, unchanged
        new_samples = sample_records(current, 25, seed=version + 100)
        for before, after in zip(new_samples, rewrite(new_samples, current, old), strict=True):
            assert set(after) == {f["name"] for f in old["fields"]}
            for f in old["fields"]:
                if "logicalType" not in json.dumps(f["type"]):
                    assert known_part(before[f["name"]], after[f["name"]]) == after[f["name"]], f["name"]


def test_behavior_event_v2_added_fields_with_defaults():
    v1 = load(AVRO_DIR / "history" / "behavior_event.v1.avsc")
    cur = load(AVRO_DIR / "behavior_event.avsc")
    added = {f["name"] for f in cur["fields"]} - {f["name"] for f in v1["fields"]}
    assert added == {"campaign_id", "message_id"}
    assert all("default" in f for f in cur["fields"] if f["name"] in added)


def mutate(name: str, change) -> tuple[dict, dict]:
    old = load(AVRO_DIR / f"{name}.avsc")
    new = copy.deepcopy(old)
    change(new)
    return old, new


def field_of(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


INCOMPATIBLE = {
    "new field without default": (lambda s: s["fields"].append({"name": "tenant", "type": "string"}), "backward"),
    "required field removed": (lambda s: s["fields"].remove(field_of(s, "event_type")), "forward"),
    "field renamed": (lambda s: field_of(s, "event_type").update(name="kind"), "backward"),
    "string to int": (lambda s: field_of(s, "event_type").update(type="int"), "backward"),
    "long narrowed to int": (lambda s: field_of(s, "event_time").update(type="int"), "backward"),
    "made nullable": (lambda s: field_of(s, "event_id").update(type=["null", "string"]), "forward"),
    "nullable made required": (lambda s: (field_of(s, "user_id").update(type="string"),
                                          field_of(s, "user_id").pop("default")), "backward"),
    "invalid default": (lambda s: field_of(s, "user_id").update(type="string"), "invalid schema"),
    "logical type changed": (lambda s: field_of(s, "event_time").update(
        type={"type": "long", "logicalType": "timestamp-micros"}), "backward"),
    "nested record field without default": (lambda s: field_of(s, "context")["type"]["fields"].append(
        {"name": "ip", "type": "string"}), "backward"),
    "array item type changed": (lambda s: field_of(s, "items").update(
        type={"type": "array", "items": "long"}, default=[]), "backward"),
    "record renamed": (lambda s: s.update(name="Event"), "top-level"),
}


@pytest.mark.parametrize("case", sorted(INCOMPATIBLE))
def test_incompatible_changes_are_refused(case):
    change, direction = INCOMPATIBLE[case]
    old, new = mutate("behavior_event", change)
    errors = compatibility_errors(old, new)
    assert errors, case
    assert any(e.startswith(direction) for e in errors), errors


COMPATIBLE = {
    "new optional field": lambda s: s["fields"].append({"name": "tenant", "type": ["null", "string"],
                                                         "default": None}),
    "defaulted field removed": lambda s: s["fields"].remove(field_of(s, "query")),
    "doc changed": lambda s: field_of(s, "event_id").update(doc="another doc"),
    "nested optional field": lambda s: field_of(s, "context")["type"]["fields"].append(
        {"name": "ip", "type": ["null", "string"], "default": None}),
    "new non-null field with a default": lambda s: s["fields"].append(
        {"name": "shop", "type": "string", "default": ""}),
}


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_compatible_changes_pass(case):
    old, new = mutate("behavior_event", COMPATIBLE[case])
    assert compatibility_errors(old, new) == []


def test_promotion_is_backward_only():
    old = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    new = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    assert resolution_errors(new, old) == []          # int data read as long
    assert resolution_errors(old, new) != []          # long data cannot be read as int
    assert compatibility_errors(old, new, forward=False) == []
    assert compatibility_errors(old, new) != []


def test_enum_symbols():
    old = {"type": "record", "name": "R", "fields": [{"name": "e", "type": {"type": "enum", "name": "E",
                                                                              "symbols": ["A", "B"]}}]}
    new = copy.deepcopy(old)
    new["fields"][0]["type"]["symbols"].append("C")
    assert any("enum" in e for e in compatibility_errors(old, new))     # old readers cannot read C
    new["fields"][0]["type"]["default"] = "A"
    old["fields"][0]["type"]["default"] = "A"
    assert compatibility_errors(old, new) == []


@pytest.fixture
def avro_dir(tmp_path: Path) -> Path:
    d = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, d)
    return d


def test_check_and_release_against_a_changed_tree(avro_dir: Path):
    assert all(r.ok for r in check_all(avro_dir))
    schema = load(avro_dir / "identity_event.avsc")
    schema["fields"].append({"name": "tenant", "type": "string"})  # no default: breaks old records
    (avro_dir / "identity_event.avsc").write_text(json.dumps(schema))
    [result] = check_all(avro_dir, ["identity_event"])
    assert result.status == "incompatible" and "tenant" in result.problems[0]
    with pytest.raises(IncompatibleSchema):
        compat.release("identity_event", avro_dir)
    # fixed with a default: compatible, released as v2, then unchanged
    schema["fields"][-1]["default"] = ""
    (avro_dir / "identity_event.avsc").write_text(json.dumps(schema))
    assert check_all(avro_dir, ["identity_event"])[0].status == "compatible"
    following = compat.releases("identity_event", avro_dir)[-1][0] + 1
    assert compat.release("identity_event", avro_dir).name == f"identity_event.v{following}.avsc"
    assert check_all(avro_dir, ["identity_event"])[0].status == "unchanged"
    assert compat.release("identity_event", avro_dir) is None


def test_backward_is_checked_against_every_release_not_only_the_latest(avro_dir: Path):
    # v2 added a defaulted field; a v3 that drops the default reads v2 records fine but not v1
    # records, which lack the field, and the codec still decodes v1 records from Kafka
    name = "campaign_delivery"
    v1 = load(avro_dir / "history" / f"{name}.v1.avsc")
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "region", "type": "string", "default": "eu"})
    (avro_dir / "history" / f"{name}.v2.avsc").write_text(json.dumps(v2))
    v3 = copy.deepcopy(v2)
    del v3["fields"][-1]["default"]
    (avro_dir / f"{name}.avsc").write_text(json.dumps(v3))
    result = check_all(avro_dir, [name])[0]
    assert result.status == "incompatible"
    assert any(p.startswith("v1 -> current, backward") for p in result.problems)


def test_cli_schema_check_passes_on_the_repository(capsys):
    assert aura_main(["schema", "check"]) == 0
    out = capsys.readouterr().out
    assert "behavior_event" in out and "all compatible" in out


def test_cli_schema_check_fails_on_an_incompatible_tree(avro_dir: Path, monkeypatch, capsys):
    schema = load(avro_dir / "behavior_event.avsc")
    field_of(schema, "user_id")["type"] = "string"
    (avro_dir / "behavior_event.avsc").write_text(json.dumps(schema))
    monkeypatch.setattr(compat, "AVRO_DIR", avro_dir)
    monkeypatch.setattr(compat.check_all, "__defaults__", (avro_dir, None))
    assert aura_main(["schema", "check", "behavior_event"]) == 1
    assert "incompatible" in capsys.readouterr().out


def test_incompatible_schema_is_an_aura_error_and_still_a_value_error():
    assert issubclass(IncompatibleSchema, AuraError) and issubclass(IncompatibleSchema, ValueError)
