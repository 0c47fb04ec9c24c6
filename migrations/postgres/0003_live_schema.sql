-- The schema the live table has when in-place ALTERs committed ahead of a load that has not
-- (yet): `{"version": N, "schema": {...}}` (the JSON schema without `meta`), NULL when the live
-- table has the schema of table_sync.schema_description. The next schema change is diffed
-- against it, so a change to a column those ALTERs added is not skipped.
ALTER TABLE dapsync.table_state ADD COLUMN IF NOT EXISTS live_schema text NULL;
