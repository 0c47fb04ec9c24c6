-- The control API and replicas (issue 13).
--
-- A table's operator controls: paused since (the schedule skips it, across restarts and on every
-- replica; NULL: not paused), a run asked for from outside (`sync` or `resync`) and a cancel asked for (picked up
-- by whichever replica runs the table).
CREATE TABLE IF NOT EXISTS dapsync.table_control (
    namespace varchar(64) NOT NULL,
    table_name varchar(64) NOT NULL,
    paused_at timestamp with time zone NULL,
    run_requested varchar(16) NULL,
    run_requested_at timestamp with time zone NULL,
    cancel_requested_at timestamp with time zone NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT pk_dapsync_table_control PRIMARY KEY (namespace, table_name)
);

-- The query budget shared by every replica on this database: the instants of the query starts
-- of the last window (a JSON array of RFC 3339 strings), updated under the row's lock.
CREATE TABLE IF NOT EXISTS dapsync.query_budget (
    name varchar(64) NOT NULL,
    starts text NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT pk_dapsync_query_budget PRIMARY KEY (name)
);

-- A run's time split, in milliseconds: waiting for a slot or the query budget, the API (query and job), the load.
ALTER TABLE dapsync.runs ADD COLUMN IF NOT EXISTS queued_ms bigint NULL;
ALTER TABLE dapsync.runs ADD COLUMN IF NOT EXISTS api_ms bigint NULL;
ALTER TABLE dapsync.runs ADD COLUMN IF NOT EXISTS load_ms bigint NULL;
CREATE INDEX IF NOT EXISTS ix_dapsync_runs_outcome ON dapsync.runs (outcome, id);
