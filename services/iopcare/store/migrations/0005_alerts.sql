-- Alerts and their lifecycle (iopcare.domain.alerts). One row per patient + rule + episode (dedup_key);
-- every change is also a row in alert_transitions (who, when, from, to, why) and an alert event in the
-- outbox, all in the transaction that made the change.
CREATE TABLE alerts (
    alert_id           uuid        PRIMARY KEY,
    dedup_key          text        NOT NULL UNIQUE,
    patient_id         text        NOT NULL,
    counselor_id       text,
    supervisor_id      text,
    rule_id            text        NOT NULL,
    rule_version       text        NOT NULL,
    rule_pack_version  text        NOT NULL,
    severity           text        NOT NULL,
    state              text        NOT NULL,   -- open | acknowledged | snoozed | resolved
    title              text        NOT NULL,
    explanation        text        NOT NULL,
    recommended_action text        NOT NULL,
    event_ids          text[]      NOT NULL,
    facts              jsonb       NOT NULL,
    occurrences        integer     NOT NULL,
    first_seen_at      timestamptz NOT NULL,
    last_seen_at       timestamptz NOT NULL,
    raised_at          timestamptz NOT NULL,
    escalate_at        timestamptz,
    escalated          boolean     NOT NULL DEFAULT false,
    snoozed_until      timestamptz,
    inhibited_by       uuid,
    resolution         text,
    risk_score         integer,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX alerts_live_by_patient ON alerts (patient_id) WHERE state <> 'resolved';
CREATE INDEX alerts_live_by_counselor ON alerts (counselor_id, severity) WHERE state <> 'resolved';
-- What the escalation sweep looks for: the earliest deadline or snooze end of a live alert.
CREATE INDEX alerts_escalation_due ON alerts (escalate_at) WHERE state = 'open' AND escalate_at IS NOT NULL;
CREATE INDEX alerts_snooze_due ON alerts (snoozed_until) WHERE state = 'snoozed';

CREATE TABLE alert_transitions (
    id         bigserial   PRIMARY KEY,
    alert_id   uuid        NOT NULL REFERENCES alerts (alert_id),
    kind       text        NOT NULL,   -- created | updated | acknowledged | snoozed | escalated | resolved
    actor      text        NOT NULL,   -- "system" or the staff id
    at         timestamptz NOT NULL,
    from_state text,
    to_state   text        NOT NULL,
    reason     text
);

CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);
