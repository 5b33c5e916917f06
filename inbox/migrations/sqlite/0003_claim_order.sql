-- The claim takes due deliveries in the order (attempts > 0), due_at, id: new ones
-- first, then retries by due time. With this index the claim reads them in that order
-- and stops after its limit, instead of sorting every due row of a backlog per claim.
CREATE INDEX mapping_webhooks_inbox_claim
    ON mapping_webhooks_inbox (namespace, (attempts > 0), due_at, id)
    WHERE state IN ('pending', 'running');
