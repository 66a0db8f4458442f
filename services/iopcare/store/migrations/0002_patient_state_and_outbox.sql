-- Each patient's engagement state: the facts of iopcare.domain.engagement.PatientState as JSON,
-- plus the columns counselors' queries and the absence sweeps filter on.
CREATE TABLE patient_state (
    patient_id      text        PRIMARY KEY,
    state           jsonb       NOT NULL,
    counselor_id    text,
    supervisor_id   text,
    level_of_care   text,
    high_water      timestamptz,          -- latest event time applied
    last_checkin_at timestamptz,
    events_applied  bigint      NOT NULL DEFAULT 0,
    late_events     bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX patient_state_counselor ON patient_state (counselor_id);

-- Signals the domain produced, written in the same transaction as the state that produced them;
-- the dispatcher relays them (at least once). dedup_key makes a replayed batch write nothing new.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    dedup_key    text        NOT NULL UNIQUE,
    patient_id   text        NOT NULL,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
