"""Each kind of state below both sides: its keys (from aura/layout.py), value codec, read helpers and pure
math. Writers in streams/ and readers in serving/ import these modules and never each other."""
