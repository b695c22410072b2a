"""Campaign aggregates: the compacted analyst topic ``agg.campaigns`` (schemas/avro/agg_campaign.avsc),
a snapshot of each campaign's (and each content variant's) counts, conversions and lift."""

from __future__ import annotations

from aura import layout
from aura.settings import Settings

VERSION = 16
DESCRIPTION = "agg.campaigns topic"
TOPICS = (layout.AGG_CAMPAIGNS,)


def cql(s: Settings) -> list[str]:
    return []
