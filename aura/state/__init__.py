"""State below both sides: one module per kind of state (its keys from aura/layout.py, its codec, read
helpers and pure math), imported by the writer (streams/) and the reader (serving/), which never import
each other."""
