-- Which signature scheme verified a delivery (issue #21). The `signature` column holds
-- that scheme's signed headers as received: for Mapping.Travel and Stripe the signature
-- header's value, for the others one `name: value` line per header. Rows stored before
-- read as Mapping.Travel's, which they are.
ALTER TABLE mapping_webhooks_inbox ADD COLUMN scheme TEXT NOT NULL DEFAULT 'mapping';
