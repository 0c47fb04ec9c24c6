-- Warnings of a run that succeeded with something left behind: a user's view, index, grant or
-- comment that could not be kept on the new copy of a table. A JSON array of
-- {"object": ..., "message": ...}, NULL when there was none.
ALTER TABLE dapsync.runs ADD COLUMN IF NOT EXISTS warnings text NULL;
