-- The read model: what the API shows about a patient (domain/summary.py), written by the processor
-- in the transaction that changes the patient's course. The API never parses patient_state.state.
-- Filled for existing patients the next time their course changes, or by `iopcare state rebuild --apply`.
CREATE TABLE patient_summary (
    patient_id                   text PRIMARY KEY REFERENCES patient_state (patient_id),
    as_of                        timestamptz,  -- when it was judged (NULL: nothing known yet)
    level_of_care                text,
    program_start                date,
    discharged                   boolean NOT NULL,
    last_event_at                timestamptz,
    last_checkin_at              timestamptz,
    last_craving                 integer,
    consecutive_unexcused_misses integer NOT NULL,
    this_week                    jsonb,        -- attendance this program week against the plan
    risk                         jsonb,        -- score, factors, explanation, trend
    updated_at                   timestamptz NOT NULL DEFAULT now()
);
