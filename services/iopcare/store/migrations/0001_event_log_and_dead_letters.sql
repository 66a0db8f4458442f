-- The append-only event log: every accepted inbound event, once. (source, event_id) is the
-- CloudEvents idempotency key, so a redelivered event inserts nothing and is applied nothing.
CREATE TABLE event_log (
    source          text        NOT NULL,
    event_id        text        NOT NULL,
    patient_id      text        NOT NULL,
    event_type      text        NOT NULL,
    event_time      timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    kafka_partition integer,
    kafka_offset    bigint,
    payload         jsonb       NOT NULL,
    PRIMARY KEY (source, event_id)
);

CREATE INDEX event_log_patient_time ON event_log (patient_id, event_time);

-- Inbound messages that could not be accepted, with the reason. The original bytes also go to the
-- dead-letter topic; this table is what an operator queries. One row per Kafka record, so a
-- redelivered poison message is recorded once.
CREATE TABLE dead_letters (
    id              bigserial   PRIMARY KEY,
    reason          text        NOT NULL,
    detail          text        NOT NULL,
    source_topic    text        NOT NULL,
    source_partition integer    NOT NULL,
    source_offset   bigint      NOT NULL,
    record_key      bytea,
    payload         bytea       NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_topic, source_partition, source_offset)
);

CREATE INDEX dead_letters_reason_time ON dead_letters (reason, failed_at);
