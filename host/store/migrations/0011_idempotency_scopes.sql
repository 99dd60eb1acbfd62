
-- Idempotency keys are scoped to the route they came to (`service::scoped_key`):
-- the same key on another route is another request. Rows logged before keep
-- answering as before: each gets its route's scope from its kind. A form's
-- name was not kept, so form rows get a scope of their own that every form
-- route looks at (`service::LEGACY_FORM_SCOPE`).
UPDATE intake SET key = (CASE kind
    WHEN 'leads'   THEN 'POST /v1/leads'
    WHEN 'events'  THEN 'POST /v1/events'
    WHEN 'webhook' THEN 'POST /v1/webhooks/{tenant}/lead'
    WHEN 'hubspot' THEN 'POST /v1/webhooks/{tenant}/hubspot'
    ELSE 'before migration 11: ' || kind
END) || char(10) || key;
