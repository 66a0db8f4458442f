-- Alert events decided together for one patient (one batch, one sweep, one counselor action) share a
-- notification group: a delivery channel sends one notification per group, not one per alert, so a
-- burst of findings about a patient pages the counselor once (alert fatigue: docs/rules.md).
ALTER TABLE outbox ADD COLUMN notification_group uuid;
