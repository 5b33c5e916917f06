-- The claim reads due deliveries through `mapping_webhooks_inbox_claim` (0003/0004), and
-- nothing reads `mapping_webhooks_inbox_due` any more: dropping it saves one index entry
-- per stored delivery and per claim.
DROP INDEX IF EXISTS mapping_webhooks_inbox_due;
