-- Warnings of a run (see migrations/postgres). The migration runs in one transaction with its
-- record, so it is applied once.
ALTER TABLE dapsync__runs ADD COLUMN warnings TEXT NULL;
