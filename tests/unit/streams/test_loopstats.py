"""streams/loopstats.py: the per-worker timings (off until summarised, nearest-rank percentiles)."""

from __future__ import annotations

from streams.loopstats import Recorder


def test_recorder_summary_and_reset() -> None:
    r = Recorder()
    r.add("x", 1.0)
    assert r.summary() == {}  # off until a summary is wanted (``loopstats.register``)
    r.enabled = True
    for v in range(1, 101):
        r.add("x", float(v))
    (n, p50, p99, mx), = r.summary().values()
    assert (n, p50, p99, mx) == (100, 50.0, 100.0, 100.0)
    assert r.summary() == {}
    assert "x n=1" in Recorder.format({"x": (1, 2.0, 3.0, 4.0)})
