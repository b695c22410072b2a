"""The lag arithmetic of serving/streamlag.py and the groups it asks Kafka about."""

from __future__ import annotations

from aura.settings import Settings
from serving.streamlag import candidate_groups, summarise


def test_summarise_per_topic_and_total():
    committed = {("p.events.behavior", 0): 10, ("p.events.behavior", 1): 5, ("p.events.identity", 0): 3,
                 ("p.gone", 0): 7}
    ends = {("p.events.behavior", 0): 12, ("p.events.behavior", 1): 5, ("p.events.identity", 0): 2}
    g = summarise("grp", committed, ends, "p")
    assert g.group == "grp" and g.lag == 2
    assert g.topics == {"events.behavior": {"lag": 2, "partitions": 2},
                        "events.identity": {"lag": 0, "partitions": 1},  # an end before the commit is 0, not negative
                        "gone": {"lag": 0, "partitions": 1}}  # no end offset (deleted): counted 0


def test_candidate_groups_cover_one_group_and_the_split_layout():
    s = Settings().replace(consumer_group="shop-worker")
    groups = candidate_groups(s)
    assert groups[0] == "shop-worker" and len(groups) == len(set(groups)) == 3
    assert all(g.startswith("shop-worker") for g in groups)
