-- Failed API authentications per client address, shared by every API replica (docs/api.md,
-- "Failed authentication"): a fixed window per client, counted in one upsert. The address is the
-- client's as seen through the trusted proxies (IOPCARE_API_TRUSTED_PROXIES), never a token.
-- Rows whose window has passed are pruned by the API.
CREATE TABLE auth_failures (
    client       text        PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL
);

GRANT SELECT, INSERT, UPDATE, DELETE ON auth_failures TO iopcare_api;
