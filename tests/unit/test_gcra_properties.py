"""Hypothesis properties of the limiter arithmetic (the memory backend and the Lua script share it):
never negative, admits exactly the burst, refills monotonically, never more than the rate allows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.ratelimit._gcra import Rate, adjust, probe

rates = st.builds(
    lambda limit, burst_share, period: Rate(limit, period, max(1, limit * burst_share // 100)),
    st.integers(1, 100_000),
    st.integers(1, 100),
    st.sampled_from([1_000_000, 60_000_000, 3_600_000_000]),
)
steps = st.lists(st.tuples(st.integers(0, 10_000_000), st.integers(1, 500)), max_size=60)
NOW = 1_700_000_000_000_000  # µs since the epoch, as Redis TIME gives


@given(rates, steps)
def test_never_negative(rate: Rate, sequence: list[tuple[int, int]]) -> None:
    tat: int | None = None
    now = NOW
    for dt, cost in sequence:
        now += dt
        verdict = probe(tat, now, rate, cost)
        assert verdict.remaining >= 0
        assert verdict.reset_us >= 0
        assert verdict.retry_us >= 0
        assert verdict.allowed == (verdict.retry_us == 0)
        if verdict.allowed:
            assert verdict.remaining <= rate.burst - cost
            tat = verdict.new_tat


@given(rates)
def test_admits_exactly_the_burst_at_one_instant(rate: Rate) -> None:
    tat: int | None = None
    admitted = 0
    while True:
        verdict = probe(tat, NOW, rate, 1)
        if not verdict.allowed:
            break
        tat = verdict.new_tat
        admitted += 1
        assert verdict.remaining == rate.burst - admitted
    assert admitted == rate.burst
    # and waiting exactly the advertised retry admits the next one
    assert probe(tat, NOW + verdict.retry_us, rate, 1).allowed
    assert not probe(tat, NOW + verdict.retry_us - 1, rate, 1).allowed


def capacity(tat: int, now: int, rate: Rate) -> int:
    """Unit requests admissible at `now` (what x-ratelimit-remaining says before a request)."""
    verdict = probe(tat, now, rate, 1)
    return verdict.remaining + 1 if verdict.allowed else verdict.remaining


@given(rates, st.integers(1, 500), st.lists(st.integers(0, 5_000_000), min_size=1, max_size=30))
def test_refills_monotonically(rate: Rate, spent: int, waits: list[int]) -> None:
    first = probe(None, NOW, rate, min(spent, rate.burst))
    assert first.allowed
    tat, now, last = first.new_tat, NOW, capacity(first.new_tat, NOW, rate)
    for wait in waits:
        now += wait
        current = capacity(tat, now, rate)
        assert last <= current <= rate.burst
        last = current
    assert capacity(tat, tat, rate) == rate.burst  # at the TAT the whole burst is back


@given(rates, st.lists(st.tuples(st.integers(0, 2_000_000), st.integers(1, 50)), max_size=80))
def test_never_admits_more_than_burst_plus_rate(rate: Rate, sequence: list[tuple[int, int]]) -> None:
    tat: int | None = None
    now, admitted = NOW, 0
    for dt, cost in sequence:
        now += dt
        verdict = probe(tat, now, rate, cost)
        if verdict.allowed:
            tat, admitted = verdict.new_tat, admitted + cost
    elapsed = now - NOW
    assert admitted <= rate.burst + elapsed // rate.ei


@given(rates, st.integers(1, 200), st.integers(-500, 500))
def test_settlement_adjusts_by_the_difference_and_refunds_never_go_below_full(
    rate: Rate, reserved: int, delta: int
) -> None:
    tat = probe(None, NOW, rate, reserved).new_tat
    moved = adjust(tat, NOW, rate, delta)
    if moved is None:
        assert tat + rate.ei * delta <= NOW  # refunded everything: the limit is full again
    else:
        assert moved == tat + rate.ei * delta
        assert moved > NOW
