-- How far each partition of the events topic has been committed, in event time. The sweep's stream
-- clock is the minimum over partitions (a watermark): a check falls due only once every partition has
-- passed its time, so a lagging partition cannot make its patients look silent.
CREATE TABLE stream_progress (
    kafka_partition integer     PRIMARY KEY,
    event_time_high timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
