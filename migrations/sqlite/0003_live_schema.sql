-- The schema the live table has ahead of table_sync (see migrations/postgres). The migration
-- runs in one transaction with its record, so it is applied once.
ALTER TABLE dapsync__table_state ADD COLUMN live_schema TEXT NULL;
