-- The schema the live table has ahead of table_sync (see migrations/postgres). Added only when
-- missing, so a re-run after a crash is harmless.
SET @dapsync_add_live_schema = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE dapsync__table_state ADD COLUMN live_schema mediumtext NULL', 'DO 0') FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'dapsync__table_state' AND column_name = 'live_schema');
PREPARE dapsync_add_live_schema FROM @dapsync_add_live_schema;
EXECUTE dapsync_add_live_schema;
DEALLOCATE PREPARE dapsync_add_live_schema;
