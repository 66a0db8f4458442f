-- The counselor's daily digest (docs/rules.md, "The daily digest"): once a day, at the clinic's hour,
-- each counselor's live digest-tier alerts not yet in a digest are gathered into one digest: one
-- inbox item and one webhook POST, acknowledged in one step. One digest per counselor and day, so two
-- dispatchers gathering at once make it once.
CREATE TABLE digests (
    digest_id       uuid        PRIMARY KEY,
    counselor_id    text        NOT NULL,
    for_day         date        NOT NULL,   -- the clinic's local day it summarizes
    made_at         timestamptz NOT NULL,
    alert_ids       uuid[]      NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    UNIQUE (counselor_id, for_day)
);

CREATE INDEX digests_by_counselor ON digests (counselor_id, for_day DESC);

-- Which digest listed the alert (NULL: not yet gathered).
ALTER TABLE alerts ADD COLUMN digest_id uuid REFERENCES digests (digest_id);
CREATE INDEX alerts_digest_waiting ON alerts (counselor_id) WHERE tier = 'digest' AND digest_id IS NULL AND state <> 'resolved';

-- A digest's webhook POST is a delivery of its own: no single patient, the digest's summary (codes and
-- counts only) instead of alert notices.
ALTER TABLE webhook_deliveries ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN digest jsonb;
