-- Third-party reports (sober-living houses, outside family-therapy providers) that arrived while the
-- patient's Part 2 consent for that party did not cover them. They are logged in event_log like every
-- event but not applied to patient_state; a consent grant within hold_until releases and applies them.
-- Rows are never deleted: an expired hold is the record that the report was refused, and why.
CREATE TABLE quarantined_events (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    patient_id  text        NOT NULL,
    event_type  text        NOT NULL,
    event_time  timestamptz NOT NULL,
    party_kind  text        NOT NULL,
    party_id    text        NOT NULL,
    reason      text        NOT NULL,   -- no_consent | consent_expired | consent_revoked | outside_scope
    hold_until  timestamptz NOT NULL,   -- a grant made later than this can no longer release it
    held_at     timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    released_by text,                   -- event id of the consent grant that released it
    PRIMARY KEY (source, event_id),
    FOREIGN KEY (source, event_id) REFERENCES event_log (source, event_id)
);

CREATE INDEX quarantined_events_waiting ON quarantined_events (patient_id) WHERE released_at IS NULL;

-- What an operator reads: each held report with its status, no payload (that stays in event_log).
CREATE VIEW quarantine_status AS
SELECT source, event_id, patient_id, event_type, event_time, party_kind, party_id, reason,
       held_at, hold_until, released_at, released_by,
       CASE WHEN released_at IS NOT NULL THEN 'released'
            WHEN hold_until < now() THEN 'expired'
            ELSE 'held' END AS status
FROM quarantined_events;
