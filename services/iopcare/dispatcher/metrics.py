"""Prometheus metrics of the dispatcher. Labels carry outcomes and alert event kinds, never a patient
id, an endpoint URL or an owner id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERT_EVENTS_CONSUMED = Counter(
    "iopcare_dispatcher_alert_events_consumed_total",
    "Alert events taken in from the alerts topic, by kind (created, escalated, ...; invalid for records"
    " that are not alert events, skipped).",
    ["kind"],
)
DELIVERIES = Counter(
    "iopcare_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered, retried (failed, tried again later) or failed"
    " (given up after the last attempt).",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "iopcare_webhook_delivery_duration_seconds",
    "Time of one webhook POST, from sending to the response (or the error).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENDPOINTS_DISABLED = Counter(
    "iopcare_webhook_endpoints_disabled_total",
    "Webhook endpoints disabled by the dispatcher because they kept failing.",
)
PENDING_DELIVERIES = Gauge(
    "iopcare_webhook_pending_deliveries", "Webhook deliveries waiting to be sent (all dispatchers)."
)
TAKE_IN_RETRIES = Counter(
    "iopcare_dispatcher_take_in_retries_total",
    "Batches of alert events whose Postgres transaction was retried (database unreachable or a race).",
)
DIGESTS = Counter(
    "iopcare_digests_made_total",
    "Counselors' daily digests made (one per counselor and day with digest-tier alerts waiting).",
)
