-- Warnings of a run (see migrations/postgres). MySQL has no ADD COLUMN IF NOT EXISTS and commits
-- DDL implicitly: the column is added only when missing, so a re-run after a crash is harmless.
SET @dapsync_add_warnings = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE dapsync__runs ADD COLUMN warnings mediumtext NULL', 'DO 0') FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'dapsync__runs' AND column_name = 'warnings');
PREPARE dapsync_add_warnings FROM @dapsync_add_warnings;
EXECUTE dapsync_add_warnings;
DEALLOCATE PREPARE dapsync_add_warnings;
