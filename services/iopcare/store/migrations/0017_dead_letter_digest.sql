-- Dead letters keep what an operator needs to see what was wrong, not every byte a hostile sender
-- chose (docs/operations.md, "Dead letters"): the first 16 KiB of the record, its full size and the
-- SHA-256 of the original, which finds the same message on the dead-letter topic or at its source.
-- Rows older than IOPCARE_DEAD_LETTER_RETENTION_DAYS are deleted by the processor.
ALTER TABLE dead_letters ADD COLUMN payload_bytes integer;
ALTER TABLE dead_letters ADD COLUMN payload_sha256 bytea;

UPDATE dead_letters SET payload_bytes = length(payload), payload_sha256 = sha256(payload);
UPDATE dead_letters SET payload = substring(payload FROM 1 FOR 16384) WHERE length(payload) > 16384;

ALTER TABLE dead_letters ALTER COLUMN payload_bytes SET NOT NULL;
ALTER TABLE dead_letters ALTER COLUMN payload_sha256 SET NOT NULL;
COMMENT ON COLUMN dead_letters.payload IS 'the first 16 KiB of the record (payload_bytes is its size)';

CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);

GRANT DELETE ON dead_letters TO iopcare_processor;
