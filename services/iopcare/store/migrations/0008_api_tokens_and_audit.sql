-- The API's bearer tokens and its audit log (iopcare.api).
-- A token is shown once when created; only its SHA-256 is kept. token_id is its public part, for
-- listing and revoking without ever handling the secret again.
CREATE TABLE api_tokens (
    token_id      text        PRIMARY KEY,
    secret_sha256 bytea       NOT NULL UNIQUE,
    role          text        NOT NULL CHECK (role IN ('counselor', 'supervisor', 'integrator', 'ops')),
    subject       text        NOT NULL,   -- the staff id (counselor, supervisor) or a system's name
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz
);

-- Every read or write of patient data through the API, allowed or not: who (subject, role, token),
-- which patient, what, when, the request id (also in the response's X-Request-Id) and the outcome.
-- Append-only: the API never updates or deletes a row.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    request_id  uuid        NOT NULL,
    actor       text        NOT NULL,
    role        text        NOT NULL,
    token_id    text        NOT NULL,
    patient_id  text,                     -- null when the request named no existing patient
    alert_id    uuid,
    action      text        NOT NULL,     -- alerts.list, alert.read, alert.acknowledge, patient.read, ...
    outcome     text        NOT NULL,     -- allowed | denied | not_found | rejected | unchanged
    route       text        NOT NULL
);

CREATE INDEX audit_log_patient ON audit_log (patient_id, at);
CREATE INDEX audit_log_request ON audit_log (request_id);
