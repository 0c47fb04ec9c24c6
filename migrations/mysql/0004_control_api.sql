-- The control API and replicas (see migrations/postgres). MySQL commits DDL implicitly: every
-- statement is safe to run again after a crash.
CREATE TABLE IF NOT EXISTS dapsync__table_control (
    namespace varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    paused_at datetime(6) NULL,
    run_requested varchar(16) NULL,
    run_requested_at datetime(6) NULL,
    cancel_requested_at datetime(6) NULL,
    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT pk_dapsync__table_control PRIMARY KEY (namespace, table_name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS dapsync__query_budget (
    name varchar(64) NOT NULL,
    starts mediumtext NOT NULL,
    updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    CONSTRAINT pk_dapsync__query_budget PRIMARY KEY (name)
) ENGINE=InnoDB;

SET @dapsync_add_times = (SELECT IF(COUNT(*) = 0, 'ALTER TABLE dapsync__runs ADD COLUMN queued_ms bigint NULL, ADD COLUMN api_ms bigint NULL, ADD COLUMN load_ms bigint NULL', 'DO 0') FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'dapsync__runs' AND column_name = 'queued_ms');
PREPARE dapsync_add_times FROM @dapsync_add_times;
EXECUTE dapsync_add_times;
DEALLOCATE PREPARE dapsync_add_times;

SET @dapsync_add_index = (SELECT IF(COUNT(*) = 0, 'CREATE INDEX ix_dapsync__runs_outcome ON dapsync__runs (outcome, id)', 'DO 0') FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'dapsync__runs' AND index_name = 'ix_dapsync__runs_outcome');
PREPARE dapsync_add_index FROM @dapsync_add_index;
EXECUTE dapsync_add_index;
DEALLOCATE PREPARE dapsync_add_index;
