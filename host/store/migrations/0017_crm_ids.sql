-- A lead found by its CRM record's id: CRM webhooks (a rep's activity on
-- a contact) name the CRM's id, not leadgate's. Records the CRM confirmed,
-- and handoffs that already carry the CRM's id (a contact the CRM created).
CREATE INDEX crm_records_crm ON crm_records(tenant, target, crm_id);
CREATE INDEX crm_outbox_crm ON crm_outbox(tenant, target, crm_id) WHERE crm_id IS NOT NULL;
