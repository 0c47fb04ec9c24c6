-- The control tables in the official client's layout (MySQL-style `instructure_dap__` names, since
-- SQLite has no schemas). Timestamps are ISO 8601 text in UTC.
CREATE TABLE IF NOT EXISTS instructure_dap__table_sync (
    id INTEGER NOT NULL,
    source_namespace TEXT NOT NULL,
    source_table TEXT NOT NULL,
    "timestamp" TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    target_schema TEXT NULL,
    target_table TEXT NOT NULL,
    schema_description_format TEXT NOT NULL,
    schema_description TEXT NOT NULL,
    CONSTRAINT pk_instructure_dap__table_sync PRIMARY KEY (id AUTOINCREMENT),
    CONSTRAINT uq_instructure_dap__table_sync UNIQUE (source_namespace, source_table)
);

CREATE TABLE IF NOT EXISTS instructure_dap__database_version (
    version INTEGER NOT NULL,
    CONSTRAINT pk_instructure_dap__database_version PRIMARY KEY (version)
);

INSERT INTO instructure_dap__database_version (version)
SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM instructure_dap__database_version);

CREATE TABLE IF NOT EXISTS dapsync__table_state (
    namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    watermark TEXT NULL,
    pending_swap TEXT NULL,
    row_count INTEGER NULL,
    last_success_at TEXT NULL,
    last_error_type TEXT NULL,
    last_error_uuid TEXT NULL,
    last_error_message TEXT NULL,
    last_error_at TEXT NULL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT pk_dapsync__table_state PRIMARY KEY (namespace, table_name)
);

CREATE TABLE IF NOT EXISTS dapsync__runs (
    id INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NULL,
    job_id TEXT NULL,
    since TEXT NULL,
    until TEXT NULL,
    schema_version INTEGER NULL,
    rows_upserted INTEGER NOT NULL DEFAULT 0,
    rows_deleted INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT NULL,
    outcome TEXT NOT NULL,
    error_type TEXT NULL,
    error_uuid TEXT NULL,
    error_message TEXT NULL,
    CONSTRAINT pk_dapsync__runs PRIMARY KEY (id AUTOINCREMENT)
);
CREATE INDEX IF NOT EXISTS ix_dapsync__runs_table ON dapsync__runs (namespace, table_name, id);

CREATE TABLE IF NOT EXISTS dapsync__rejects (
    id INTEGER NOT NULL,
    run_id INTEGER NULL,
    namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    record_key TEXT NULL,
    reason TEXT NOT NULL,
    line TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT pk_dapsync__rejects PRIMARY KEY (id AUTOINCREMENT)
);
CREATE INDEX IF NOT EXISTS ix_dapsync__rejects_table ON dapsync__rejects (namespace, table_name, id);
