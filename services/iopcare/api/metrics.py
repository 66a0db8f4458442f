"""Prometheus metrics of the API. Labels carry route templates, methods, statuses and severities,
never patient ids, alert ids or tokens."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "iopcare_api_requests_total",
    "API requests by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "iopcare_api_request_duration_seconds",
    "API request handling time by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter(
    "iopcare_api_auth_failures_total", "Requests refused for a missing, unknown, revoked or expired token."
)
RATE_LIMITED = Counter(
    "iopcare_api_rate_limited_total",
    "Requests refused because their address failed authentication too often.",
)
INGESTED = Counter(
    "iopcare_api_ingested_events_total",
    "Events posted to /v1/events, by outcome (accepted, rejected).",
    ["outcome"],
)
ALERTS_OPEN = Gauge(
    "iopcare_alerts_open", "Live (unresolved) alerts by severity and state.", ["severity", "state"]
)
OLDEST_UNACKNOWLEDGED = Gauge(
    "iopcare_alert_oldest_unacknowledged_seconds",
    "Age of the oldest open (unacknowledged, not inhibited) alert, by severity; 0 when there is none.",
    ["severity"],
)
TIME_TO_ACKNOWLEDGE = Histogram(
    "iopcare_alert_time_to_acknowledge_seconds",
    "From an alert being raised to a counselor acknowledging it, by severity.",
    ["severity"],
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 3 * 24 * 3600, 7 * 24 * 3600),
)
