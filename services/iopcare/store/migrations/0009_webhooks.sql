-- Webhooks: alert notifications POSTed to a counselor's or a team's system (iopcare.dispatcher).
--
-- An endpoint belongs to a staff member (owner_kind 'counselor', owner_id = their staff id: alerts
-- addressed to them, and escalations of alerts they supervise) or to a team (owner_kind 'team',
-- owner_id = the supervisor's staff id: every alert of that supervisor's counselors). The secret
-- signs every POST (HMAC-SHA256); it has to be kept readable to sign, like any webhook sender's.
CREATE TABLE webhook_endpoints (
    id                   bigserial   PRIMARY KEY,
    owner_kind           text        NOT NULL CHECK (owner_kind IN ('counselor', 'team')),
    owner_id             text        NOT NULL,
    url                  text        NOT NULL,
    secret               text        NOT NULL,
    -- Alert event kinds this endpoint is told about. Repeat triggers ('updated') are left out by
    -- default: a repeat must not page again (alert fatigue: docs/rules.md).
    event_kinds          text[]      NOT NULL
        DEFAULT '{created,acknowledged,snoozed,escalated,resolved}',
    enabled              boolean     NOT NULL DEFAULT true,
    disabled_at          timestamptz,
    disabled_reason      text,                  -- counts and status codes only, never a response body
    consecutive_failures integer     NOT NULL DEFAULT 0,
    failing_since        timestamptz,           -- first failure since the last success
    last_success_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner_id) WHERE enabled;

-- One row per POST to make: the alert changes of one notification group (decided together for one
-- patient) for one endpoint. Changes of a group that arrive while its row is still waiting for its
-- first attempt join that row; any later go into a follow-up row (part 1, 2, ...). A redelivered
-- alert event is recognised by its event id in `notices` and adds nothing.
CREATE TABLE webhook_deliveries (
    id                 bigserial   PRIMARY KEY,
    delivery_id        uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),  -- receivers dedupe by it
    endpoint_id        bigint      NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    notification_group text        NOT NULL,   -- the iopcare-notification-group header, else the event id
    part               integer     NOT NULL DEFAULT 0,
    patient_id         text        NOT NULL,   -- pseudonymous
    notices            jsonb       NOT NULL,   -- the alert changes as the receiver sees them (no free text)
    state              text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_status        integer,                -- HTTP status of the last attempt, if one came back
    last_error         text,                   -- e.g. http_503, TimeoutError, endpoint_disabled
    created_at         timestamptz NOT NULL DEFAULT now(),
    delivered_at       timestamptz,
    UNIQUE (endpoint_id, notification_group, part)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_pending_by_endpoint ON webhook_deliveries (endpoint_id) WHERE state = 'pending';
