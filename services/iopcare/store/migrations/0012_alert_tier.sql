-- How each alert reaches the counselor (docs/rules.md, "Tiers"): page (pushed to webhooks, escalates),
-- inbox (shown only) or digest (in the counselor's daily summary). Alerts raised before this
-- migration were all delivered as pages.
ALTER TABLE alerts ADD COLUMN tier text NOT NULL DEFAULT 'page'
    CHECK (tier IN ('page', 'inbox', 'digest'));
