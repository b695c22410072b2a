"""GCRA rate limiting (pure step and the local fallback limiter)."""

from __future__ import annotations

from serving.ratelimit import LocalGcra, gcra, retry_after_header


def test_burst_then_the_rate():
    tat, now = 0.0, 1000.0
    allowed = 0
    for _ in range(10):
        v, tat = gcra(tat, now, rate_per_s=2.0, burst=4)
        allowed += v.allowed
    assert allowed == 4  # the burst at one instant
    v, tat2 = gcra(tat, now, 2.0, 4)
    assert not v.allowed and tat2 == tat and abs(v.retry_after_s - 0.5) < 1e-9
    v, tat = gcra(tat, now + 0.5, 2.0, 4)  # one interval later: exactly one more
    assert v.allowed
    v, _ = gcra(tat, now + 0.5, 2.0, 4)
    assert not v.allowed


def test_sustained_rate_is_respected_over_time():
    tat = 0.0
    allowed = 0
    for i in range(1000):  # 100 requests/s offered for 10 s against a 10/s limit, burst 5
        v, tat = gcra(tat, 50.0 + i * 0.01, rate_per_s=10.0, burst=5)
        allowed += v.allowed
    assert 100 <= allowed <= 106  # 10 s x 10/s (+ the burst)


def test_remaining_counts_down_the_burst():
    tat = 0.0
    seen = []
    for _ in range(3):
        v, tat = gcra(tat, 10.0, 1.0, 3)
        seen.append(v.remaining)
    assert seen == [2, 1, 0]


def test_local_limiter_is_per_key_and_bounded():
    t = [0.0]
    lim = LocalGcra(clock=lambda: t[0], max_keys=10)
    assert lim.hit("a", 1.0, 1).allowed and not lim.hit("a", 1.0, 1).allowed
    assert lim.hit("b", 1.0, 1).allowed
    for i in range(30):
        t[0] += 2.0
        lim.hit(f"k{i}", 1.0, 1)
    assert len(lim.tats) <= 11


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after_header(0.001) == "1" and retry_after_header(1.2) == "2" and retry_after_header(3) == "3"


def test_a_lease_of_one_is_exactly_one_gcra_step():
    from serving.ratelimit import lease

    tat_a = tat_b = 0.0
    for i in range(200):  # 50 requests/s offered against 2/s, burst 4
        now = 100.0 + i * 0.02
        v, tat_a = gcra(tat_a, now, 2.0, 4)
        granted, retry, tat_b = lease(tat_b, now, 2.0, 4, lease_s=0.0)
        assert (granted == 1) == v.allowed and granted <= 1
        assert tat_a == tat_b
        if not v.allowed:
            assert abs(retry - v.retry_after_s) < 1e-9


def test_leases_never_let_a_key_exceed_rate_plus_burst():
    from serving.ratelimit import lease

    tat, admitted = 0.0, 0
    for i in range(1000):  # several processes asking every 10 ms for 10 s: 100/s, burst 20
        granted, _retry, tat = lease(tat, 50.0 + i * 0.01, 100.0, 20, lease_s=0.05)
        assert granted <= 5  # rate x lease_s
        admitted += granted
    assert 1000 <= admitted <= 1000 + 20


def test_a_lease_is_bounded_by_the_bucket_and_the_cap():
    from serving.ratelimit import lease

    granted, _r, _t = lease(0.0, 10.0, 1e7, 10_000_000, lease_s=0.05, max_lease=1000)
    assert granted == 1000
    granted, _r, tat = lease(0.0, 10.0, 1000.0, 3, lease_s=0.05)
    assert granted == 3  # 50 wanted, the bucket holds 3
    granted, retry, _t = lease(tat, 10.0, 1000.0, 3, lease_s=0.05)
    assert granted == 0 and retry > 0
