-- A lead found by its CRM record's id: CRM webhooks (a rep's activity on
-- a contact) name the CRM's id, not leadgate's. Records the CRM confirmed,
-- and handoffs that already carry the CRM's id (a contact the CRM created).
CREATE INDEX crm_records_crm ON crm_records(tenant, target, crm_id);
CREATE INDEX crm_outbox_crm ON crm_outbox(tenant, target, crm_id) WHERE crm_id IS NOT NULL;

-- An account's owner is read among current, owned assignments only: an
-- account whose leads wait in the queue (no rep) costs no more to look up
-- than one with a single owned lead.
DROP INDEX assignments_domain;
DROP INDEX assignments_company;
CREATE INDEX assignments_owned_domain ON assignments(tenant, domain, id)
    WHERE domain IS NOT NULL AND replaced_at IS NULL AND rep_id IS NOT NULL;
CREATE INDEX assignments_owned_company ON assignments(tenant, company_key, id)
    WHERE company_key IS NOT NULL AND replaced_at IS NULL AND rep_id IS NOT NULL;
