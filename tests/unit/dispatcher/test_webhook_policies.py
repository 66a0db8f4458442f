"""Retry backoff and the disable policy of webhook endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iopcare.dispatcher.webhooks.policy import DisablePolicy, RetryPolicy, check_url, origin

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def test_the_wait_doubles_after_each_failure_until_the_cap() -> None:
    policy = RetryPolicy(base_seconds=10, max_seconds=3600, max_attempts=12)
    ceilings = [policy.ceiling(n) for n in range(1, 12)]
    assert ceilings == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]


@pytest.mark.parametrize("attempts", [1, 2, 5, 9, 10, 40, 500])
def test_jitter_keeps_each_wait_between_half_and_all_of_its_step(attempts: int) -> None:
    policy = RetryPolicy(base_seconds=10, max_seconds=3600, max_attempts=12)
    ceiling = policy.ceiling(attempts)
    assert policy.delay(attempts, 0.0) == ceiling / 2
    assert ceiling / 2 < policy.delay(attempts, 0.5) < ceiling
    assert policy.delay(attempts, 0.999999) == pytest.approx(ceiling, rel=1e-5)


def test_a_delivery_gives_up_after_its_last_attempt() -> None:
    policy = RetryPolicy(base_seconds=1, max_seconds=10, max_attempts=3)
    assert [policy.gives_up(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_the_default_schedule_spans_hours_not_days() -> None:
    policy = RetryPolicy()
    most = sum(policy.ceiling(n) for n in range(1, policy.max_attempts))
    least = most / 2
    assert least > 1.5 * 3600 and most < 6 * 3600


def test_an_endpoint_stays_enabled_below_the_failure_count_however_long_it_fails() -> None:
    policy = DisablePolicy(after_failures=10, after_seconds=3600)
    assert policy.reason(9, T0, T0 + timedelta(days=3), "http_503") is None


def test_a_burst_of_failures_within_the_window_does_not_disable_an_endpoint() -> None:
    policy = DisablePolicy(after_failures=10, after_seconds=3600)
    assert policy.reason(40, T0, T0 + timedelta(minutes=5), "http_503") is None


def test_enough_failures_over_the_window_disable_with_a_reason_of_counts_and_codes() -> None:
    policy = DisablePolicy(after_failures=10, after_seconds=3600)
    reason = policy.reason(12, T0, T0 + timedelta(hours=1, minutes=5), "ClientConnectorError")
    assert reason == "12 consecutive failed attempts over 1h05m; last: ClientConnectorError"


def test_listings_and_logs_show_only_the_origin_of_a_url() -> None:
    url = "https://hooks.example.org:8443/services/T000/B000/XXXXsecretXXXX?token=abc"
    assert origin(url) == "https://hooks.example.org:8443"
    assert origin("http://[::1]:9000/x") == "http://[::1]:9000"


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "example.org/hook", "http:///path", "javascript:alert(1)"]
)
def test_only_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url)
    assert check_url("https://example.org/hook") == "https://example.org/hook"
