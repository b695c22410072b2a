"""serving/app.tune_gc: the API process's young-generation threshold is the setting's, the objects
alive at the first startup are frozen once per process, and the older generations keep Python's."""

from __future__ import annotations

import gc

from serving import app as app_module


def test_tune_gc_sets_the_threshold_and_freezes_once(monkeypatch):
    before = gc.get_threshold()
    monkeypatch.setattr(app_module, "_gc_frozen", [])
    try:
        app_module.tune_gc(12_345)
        assert gc.get_threshold() == (12_345, *before[1:])
        frozen = gc.get_freeze_count()
        assert frozen > 0 and app_module._gc_frozen == [True]
        app_module.tune_gc(23_456)  # a second app in the same process: threshold only, no new freeze
        # (frozen objects can still be freed by their reference counts, so the count may only fall)
        assert gc.get_threshold()[0] == 23_456 and gc.get_freeze_count() <= frozen
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
