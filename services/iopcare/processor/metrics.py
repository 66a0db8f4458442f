"""Prometheus metrics of the processor. Labels carry event types and outcomes, never patient ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "iopcare_events_processed_total",
    "Inbound records by event type and outcome (applied, duplicate, quarantined, dead_lettered).",
    ["type", "outcome"],
)
DEAD_LETTERS = Counter(
    "iopcare_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"]
)
LATE_EVENTS = Counter(
    "iopcare_late_events_total", "Events older than the lateness window behind the patient's latest event."
)
BATCH_SIZE = Histogram(
    "iopcare_batch_size_records",
    "Records per processed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000),
)
COMMIT_SECONDS = Histogram(
    "iopcare_batch_commit_duration_seconds",
    "Time to commit one batch to Postgres.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ARRIVAL_TO_COMMIT_SECONDS = Histogram(
    "iopcare_arrival_to_commit_seconds",
    "From the record's Kafka timestamp to the commit of its batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
EVENT_TIME_TO_COMMIT_SECONDS = Histogram(
    "iopcare_event_time_to_commit_seconds",
    "From the event's own time (when it happened) to the commit of its batch.",
    buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600),
)
PROCESSING_FAILURES = Counter(
    "iopcare_processing_failures_total",
    "Valid events whose processing raised, dead-lettered as processing_failed (unlabelled so that it "
    "exists at 0 from the start and its first increase is seen).",
)
SWEEP_PATIENT_FAILURES = Counter(
    "iopcare_sweep_patient_failures_total",
    "Patients whose due checks or escalations raised while being decided (a defect); each is set "
    "aside for 5 minutes and tried again, the other patients are swept (unlabelled, as above).",
)
STORE_RETRIES = Counter(
    "iopcare_store_retries_total", "Batch commits retried: Postgres unreachable or the commit failed."
)
QUARANTINED = Counter(
    "iopcare_quarantined_events_total",
    "Third-party reports held because the patient's consent for that party did not cover them.",
    ["party_kind", "reason"],
)
RELEASED = Counter(
    "iopcare_quarantine_released_total",
    "Held third-party reports released (and applied) by a consent grant within the hold window.",
    ["party_kind"],
)
SWEEP_RUNS = Counter(
    "iopcare_absence_sweep_runs_total", "Absence sweeps run, by outcome (ok, failed).", ["outcome"]
)
SWEEP_CHECKS = Counter(
    "iopcare_absence_checks_fired_total",
    "Absence checks fired, by kind and whether the absence was real (signalled) or had moved on.",
    ["kind", "signalled"],
)
SWEEP_SECONDS = Histogram(
    "iopcare_absence_sweep_duration_seconds",
    "Time of one absence sweep transaction.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ALERT_CHANGES = Counter(
    "iopcare_alert_changes_total",
    "Alert lifecycle changes decided by this worker, by kind (created, updated, escalated, resolved, ...)"
    " and severity.",
    ["kind", "severity"],
)
ALERT_EVENTS_PUBLISHED = Counter(
    "iopcare_alert_events_published_total", "Alert events relayed from the outbox to the alerts topic."
)
RELAY_FAILURES = Counter(
    "iopcare_outbox_relay_failures_total", "Outbox relay runs that failed (retried on the next tick)."
)
CONSUMER_LAG_MESSAGES = Gauge(
    "iopcare_consumer_lag_messages",
    "Records on this worker's assigned partitions not yet applied (high-water mark minus next offset).",
    ["partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "iopcare_worker_assigned_partitions",
    "Partitions of the events topic this worker holds now (0: it does no work; see /readyz).",
)
CONSUMER_LAG_SECONDS = Gauge(
    "iopcare_consumer_lag_seconds",
    "While behind: seconds since the last applied record was produced, the largest over this worker's"
    " partitions; 0 when caught up.",
)
