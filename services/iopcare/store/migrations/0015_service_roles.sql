-- Least privilege (docs/operations.md, "Database roles"): one role per service, with only the
-- grants its code needs, and an audit log nobody can rewrite.
--
-- The roles are NOLOGIN groups: `iopcare setup` gives each one LOGIN (and its password, when the
-- settings carry one), or a DBA makes login users members of them. Roles belong to the server, not
-- to one database, so a second database on the same server finds them already there. The owner of
-- the tables (whoever runs the migrations) keeps every right; no service connects as the owner.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['iopcare_processor', 'iopcare_api', 'iopcare_dispatcher'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- made by another database's migration on this server
        END;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), name);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), name);
    END LOOP;
END
$$;

-- No service creates objects: Postgres 15 and later revoke CREATE on the public schema from PUBLIC
-- already; earlier servers granted it.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The processor: the event log and its dead letters, the patient state and its read model, consent
-- holds, absence checks, alerts and their transitions, the outbox it relays to the alerts topic,
-- and the stream clock's progress.
GRANT SELECT, INSERT ON event_log, dead_letters, alert_transitions TO iopcare_processor;
GRANT SELECT, INSERT, UPDATE ON patient_state, patient_summary, stream_progress, alerts, outbox,
    quarantined_events TO iopcare_processor;
GRANT SELECT, INSERT, UPDATE, DELETE ON absence_checks TO iopcare_processor;
GRANT SELECT ON quarantine_status TO iopcare_processor;

-- The API: reads for the inbox and the patient view, a counselor's actions on alerts and digests
-- (which write transitions and alert events to the outbox), token lookup, and the audit log.
GRANT SELECT ON api_tokens, patient_state, patient_summary, event_log, quarantined_events,
    quarantine_status, absence_checks, stream_progress TO iopcare_api;
GRANT SELECT, UPDATE ON digests TO iopcare_api;
GRANT SELECT, INSERT, UPDATE ON alerts TO iopcare_api;  -- written as the processor writes them (upsert)
GRANT SELECT, INSERT ON alert_transitions, outbox TO iopcare_api;
GRANT INSERT ON audit_log TO iopcare_api;
-- A counselor's action takes the patient's row lock as a batch does (SELECT ... FOR UPDATE), which
-- Postgres allows only with UPDATE on some column: the one whose change does no harm.
GRANT UPDATE (updated_at) ON patient_state TO iopcare_api;

-- The dispatcher: webhook endpoints and deliveries, the daily digests it gathers (marking the alerts
-- they list), and the alerts and read model a notice is made from.
GRANT SELECT, UPDATE ON webhook_endpoints, alerts TO iopcare_dispatcher;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries, digests TO iopcare_dispatcher;
GRANT SELECT ON patient_summary, alert_transitions TO iopcare_dispatcher;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO iopcare_processor, iopcare_api, iopcare_dispatcher;

-- The audit log is append-only for everyone: no service role holds UPDATE, DELETE or TRUNCATE, and
-- a trigger refuses them to the owner too (a mistaken script, a console session). Removing old rows
-- under a retention policy is a deliberate act: drop the trigger in a migration that says why.
REVOKE ALL ON audit_log FROM PUBLIC;

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
