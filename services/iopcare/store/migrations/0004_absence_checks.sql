-- Absence checks ("no check-in for 48 h", "week closed below plan") due at a time, per patient.
-- The batch transaction that changes a patient's state (re)schedules them; the sweep takes due ones
-- under the patient's row lock, marks them fired and writes any signal to the outbox in one
-- transaction, so each fires once across restarts, rebalances and several sweeping workers.
CREATE TABLE absence_checks (
    patient_id text        NOT NULL REFERENCES patient_state (patient_id),
    check_key  text        NOT NULL,   -- the episode: e.g. checkin_silence:48h:<check-in event id>
    kind       text        NOT NULL,   -- checkin_silence | week_close
    due_at     timestamptz NOT NULL,
    fired_at   timestamptz,
    signalled  boolean,                -- whether firing found the absence real (else it had moved on)
    PRIMARY KEY (patient_id, check_key)
);

CREATE INDEX absence_checks_due ON absence_checks (due_at) WHERE fired_at IS NULL;
