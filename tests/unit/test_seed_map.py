"""docs/seed-map.md names, for each scenario of the seed's test list, the Aura test that runs it: every
test it names exists (a renamed or deleted test fails here, not silently in the docs)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_named_by_the_seed_map_exists() -> None:
    doc = (ROOT / "docs" / "seed-map.md").read_text()
    section = doc[doc.index("## The seed's test list"):]
    named = NAMED.findall(section)
    assert len(named) >= 30
    groups = {row.split("|")[1].strip().split(":")[0] for row in section.splitlines() if row.startswith("| ")
              and "::" in row}
    assert {"profiles", "recommendations", "personalization", "campaigns", "models", "analytics", "optimization",
            "content", "system", "integration"} <= groups
    for path, name in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} does not exist"
