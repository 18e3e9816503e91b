"""The hedge budget: available at any traffic, bounded at every traffic."""

from __future__ import annotations

from strategies._budget import TokenBucket


def test_one_request_a_minute_can_always_hedge() -> None:
    bucket = TokenBucket(ratio=0.2, min_per_s=0.1, burst=10)
    granted = 0
    for minute in range(60):
        bucket.deposit(minute * 60.0)
        granted += bucket.withdraw()
    assert granted == 60  # every request could hedge (a share of all requests would have allowed 12)


def test_ten_thousand_requests_a_second_hedge_about_the_ratio() -> None:
    bucket = TokenBucket(ratio=0.2, min_per_s=0.1, burst=10)
    granted = 0
    for i in range(10_000):
        bucket.deposit(i / 10_000)  # one second of traffic
        granted += bucket.withdraw()
    assert 1_990 <= granted <= 2_011  # 20 % of traffic, plus the initial burst and 0.1 earned over the second


def test_a_budgeted_hedge_that_was_not_needed_is_given_back() -> None:
    bucket = TokenBucket(ratio=0.0, min_per_s=0.0, burst=1)
    bucket.deposit(0.0)
    assert bucket.withdraw()
    assert not bucket.withdraw()
    bucket.refund()
    assert bucket.withdraw()
