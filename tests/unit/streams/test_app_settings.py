"""streams/app.faust_app: the worker's Faust settings follow its settings object."""

from __future__ import annotations

from aura.settings import Settings
from streams.app import faust_app


def test_the_stream_buffer_is_the_setting_and_never_under_a_batch(tmp_path):
    s = Settings().replace(home=tmp_path)
    assert faust_app(s).conf.stream_buffer_maxsize == s.worker.stream_buffer >= s.worker.batch_max
    small = Settings().replace(home=tmp_path, stream_buffer=10)  # under a batch: a take could never fill
    assert faust_app(small).conf.stream_buffer_maxsize == small.worker.batch_max
