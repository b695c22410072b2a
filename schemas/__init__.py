"""Avro schemas of every record Aura reads or writes, and the wire codec (single-object encoding)."""
