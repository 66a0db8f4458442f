-- What the counselor did about an alert when acknowledging it (docs/rules.md, "Judging a pack by the
-- counselors' own outcomes"): contacted the patient, changed the plan, no action needed, false alarm.
-- The alert keeps the latest; each acknowledgement transition keeps the one it recorded. A code, never
-- free text (the optional note is the transition's reason, which no topic carries).
ALTER TABLE alerts ADD COLUMN acknowledgement_outcome text
    CHECK (acknowledgement_outcome IN ('contacted_patient', 'changed_plan', 'no_action_needed', 'false_alarm'));
ALTER TABLE alert_transitions ADD COLUMN outcome text
    CHECK (outcome IN ('contacted_patient', 'changed_plan', 'no_action_needed', 'false_alarm'));
-- What `iopcare evaluate --database` reads: acknowledgements with an outcome, by when they happened.
CREATE INDEX alert_transitions_outcomes ON alert_transitions (at) WHERE outcome IS NOT NULL;
