-- Webhook signing secrets at rest and in rotation (docs/webhooks.md).
-- `secret` holds the secret encrypted (a Fernet token under IOPCARE_WEBHOOK_SECRET_KEYS), never the
-- secret itself: `iopcare setup` encrypts any row still in plaintext, which SQL alone cannot.
-- A rotated-out secret stays active beside the new one until `previous_secret_expires_at`, so the
-- receiver can switch when it likes: the dispatcher signs with both meanwhile.
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret text;
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expires_at timestamptz;
ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_previous_secret_expires
    CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL));
COMMENT ON COLUMN webhook_endpoints.secret IS 'the signing secret, encrypted (Fernet); never plaintext';
