-- The control API and replicas (see migrations/postgres). The migration runs in one transaction
-- with its record, so it is applied once.
CREATE TABLE IF NOT EXISTS dapsync__table_control (
    namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    paused_at TEXT NULL,
    run_requested TEXT NULL,
    run_requested_at TEXT NULL,
    cancel_requested_at TEXT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (namespace, table_name)
);

CREATE TABLE IF NOT EXISTS dapsync__query_budget (
    name TEXT NOT NULL PRIMARY KEY,
    starts TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

ALTER TABLE dapsync__runs ADD COLUMN queued_ms INTEGER NULL;
ALTER TABLE dapsync__runs ADD COLUMN api_ms INTEGER NULL;
ALTER TABLE dapsync__runs ADD COLUMN load_ms INTEGER NULL;
CREATE INDEX IF NOT EXISTS ix_dapsync_runs_outcome ON dapsync__runs (outcome, id);
