"""Worker roles (aura/layout.py): which owners a worker runs and the consumer group they read in."""

from __future__ import annotations

import pytest

from aura import layout
from aura.settings import Settings


def test_all_is_every_role_in_the_base_group():
    s = Settings().replace(consumer_group="g")
    assert layout.worker_roles("all") == layout.WORKER_ROLES
    assert layout.worker_group(s) == "g"
    assert layout.worker_groups(s, split=False) == ["g"]


def test_a_subset_is_normalised_and_has_its_own_group():
    s = Settings().replace(consumer_group="g")
    assert layout.worker_roles(" decisions,recs ") == ("recs", "decisions")
    assert layout.worker_group(s.replace(**{"worker_roles": "decisions,recs"})) == "g-recs+decisions"
    assert layout.worker_group(s.replace(**{"worker_roles": "recs,decisions,profiles"})) == "g"


def test_the_split_covers_every_role_once_in_distinct_groups():
    s = Settings().replace(consumer_group="g")
    covered = [r for roles in layout.SPLIT_ROLES for r in layout.worker_roles(roles)]
    assert sorted(covered) == sorted(layout.WORKER_ROLES)
    groups = layout.worker_groups(s, split=True)
    assert len(set(groups)) == len(layout.SPLIT_ROLES) and "g" not in groups


@pytest.mark.parametrize("bad", ["", " , ", "profile", "recs,nope"])
def test_unknown_or_empty_roles_are_refused(bad):
    with pytest.raises(ValueError, match="worker roles"):
        layout.worker_roles(bad)
