-- How far the dispatcher has taken in iop.alerts.v1, per partition: the next offset to read, written
-- in the same transaction as the deliveries of the records before it (docs/webhooks.md, "Where a
-- dispatcher starts"). A dispatcher seeks here when it is assigned a partition, so a new consumer
-- group (a renamed one, or one whose Kafka offsets expired) goes on from what Postgres holds as
-- taken in instead of re-reading every retained alert event.
CREATE TABLE dispatcher_progress (
    topic text NOT NULL,
    partition integer NOT NULL CHECK (partition >= 0),
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
GRANT SELECT, INSERT, UPDATE ON dispatcher_progress TO iopcare_dispatcher;
