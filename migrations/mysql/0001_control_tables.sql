-- The official client's control tables (instructure-dap-client 2.x layout; MySQL has no schemas, so
-- the names carry an `instructure_dap__` prefix), created only when absent.
CREATE TABLE IF NOT EXISTS instructure_dap__table_sync (
    id bigint NOT NULL AUTO_INCREMENT,
    source_namespace varchar(64) NOT NULL,
    source_table varchar(64) NOT NULL,
    `timestamp` datetime NOT NULL,
    schema_version bigint NOT NULL,
    target_schema varchar(64) NULL,
    target_table varchar(64) NOT NULL,
    schema_description_format varchar(64) NOT NULL,
    schema_description mediumtext NOT NULL,
    CONSTRAINT pk_instructure_dap__table_sync PRIMARY KEY (id),
    CONSTRAINT uq_instructure_dap__table_sync UNIQUE (source_namespace, source_table)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS instructure_dap__database_version (
    version bigint NOT NULL,
    CONSTRAINT pk_instructure_dap__database_version PRIMARY KEY (version)
) ENGINE=InnoDB;

INSERT INTO instructure_dap__database_version (version)
SELECT 1 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM instructure_dap__database_version);

-- dapsync's own bookkeeping (see migrations/postgres for what each table holds).
CREATE TABLE IF NOT EXISTS dapsync__table_state (
    namespace varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    watermark datetime(6) NULL,
    pending_swap mediumtext NULL,
    row_count bigint NULL,
    last_success_at datetime(6) NULL,
    last_error_type text NULL,
    last_error_uuid text NULL,
    last_error_message text NULL,
    last_error_at datetime(6) NULL,
    consecutive_failures bigint NOT NULL DEFAULT 0,
    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT pk_dapsync__table_state PRIMARY KEY (namespace, table_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS dapsync__runs (
    id bigint NOT NULL AUTO_INCREMENT,
    namespace varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    kind varchar(16) NOT NULL,
    reason varchar(32) NULL,
    job_id text NULL,
    since datetime(6) NULL,
    until datetime(6) NULL,
    schema_version bigint NULL,
    rows_upserted bigint NOT NULL DEFAULT 0,
    rows_deleted bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    started_at datetime(6) NOT NULL,
    finished_at datetime(6) NULL,
    outcome varchar(16) NOT NULL,
    error_type text NULL,
    error_uuid text NULL,
    error_message text NULL,
    CONSTRAINT pk_dapsync__runs PRIMARY KEY (id),
    INDEX ix_dapsync__runs_table (namespace, table_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS dapsync__rejects (
    id bigint NOT NULL AUTO_INCREMENT,
    run_id bigint NULL,
    namespace varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    record_key text NULL,
    reason text NOT NULL,
    line longtext NOT NULL,
    created_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT pk_dapsync__rejects PRIMARY KEY (id),
    INDEX ix_dapsync__rejects_table (namespace, table_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
