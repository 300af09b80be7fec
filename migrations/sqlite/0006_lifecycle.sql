-- Lifecycle: retention, reader leases, garbage collection and soft-dropped tables.
-- Kept in step with ../postgres/0008_lifecycle.sql: same tables, columns and indexes.

-- Retention: keep the last N versions of each partition and/or every version that was current
-- within a duration. A table's own setting wins over its namespace's; NULL means "not set".
ALTER TABLE namespaces ADD COLUMN keep_versions BIGINT;
ALTER TABLE namespaces ADD COLUMN keep_for_us BIGINT;
ALTER TABLE tables ADD COLUMN keep_versions BIGINT;
ALTER TABLE tables ADD COLUMN keep_for_us BIGINT;
-- A dropped table can be undropped until GC starts freeing its storage.
ALTER TABLE tables ADD COLUMN purge_started_at_us BIGINT;
ALTER TABLE tables ADD COLUMN purged_at_us BIGINT;

-- GC's two phases on a batch: marked expired (in a transaction; never readable again), then
-- its files deleted and the deletion recorded. History rows stay.
ALTER TABLE batches ADD COLUMN expired_at_us BIGINT;
ALTER TABLE batches ADD COLUMN expired_reason TEXT;
ALTER TABLE batches ADD COLUMN deleted_at_us BIGINT;
-- A deletion that failed (the batch directory could not be listed or deleted): why, and in
-- which GC run, so the run goes on with the other batches and a later run tries again.
ALTER TABLE batches ADD COLUMN gc_error TEXT;
ALTER TABLE batches ADD COLUMN gc_error_run TEXT;
CREATE INDEX batches_table ON batches (table_id, batch_id);
CREATE INDEX batches_to_delete ON batches (table_id) WHERE expired_at_us IS NOT NULL AND deleted_at_us IS NULL;
CREATE INDEX batches_uncommitted ON batches (table_id) WHERE state IN ('aborted', 'abandoned') AND expired_at_us IS NULL;

-- Leases pin batches against GC: one per read in progress (no name) or named by a job.
CREATE TABLE leases (
    lease_id        TEXT    PRIMARY KEY,        -- UUIDv7
    table_id        BIGINT  NOT NULL REFERENCES tables (id),
    name            TEXT,                       -- NULL for a read's own lease
    holder          TEXT    NOT NULL,
    selection       TEXT    NOT NULL,           -- what was pinned, for people
    created_at_us   BIGINT  NOT NULL,
    expires_at_us   BIGINT  NOT NULL,
    -- A paged whole-table read pins every batch current at this moment, not only its rows in
    -- lease_batches (its later pages are pinned before they are resolved).
    as_of_us        BIGINT
);
CREATE UNIQUE INDEX leases_name ON leases (table_id, name) WHERE name IS NOT NULL;
CREATE INDEX leases_expiry ON leases (expires_at_us);
CREATE TABLE lease_batches (
    lease_id        TEXT    NOT NULL REFERENCES leases (lease_id) ON DELETE CASCADE,
    batch_id        TEXT    NOT NULL REFERENCES batches (batch_id),
    PRIMARY KEY (lease_id, batch_id)
);
CREATE INDEX lease_batches_batch ON lease_batches (batch_id);

-- One GC runs at a time across replicas: the holder of this row, until it expires.
CREATE TABLE gc_lock (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    holder          TEXT    NOT NULL,
    expires_at_us   BIGINT  NOT NULL
);
INSERT INTO gc_lock (id, holder, expires_at_us) VALUES (1, '', 0);

-- Schema evolution: each table's policy ('strict': writes match the schema; 'additive': a write
-- may add nullable columns and widen types), and every schema a table has had.
ALTER TABLE tables ADD COLUMN schema_policy TEXT NOT NULL DEFAULT 'strict';
CREATE TABLE table_schemas (
    table_id        BIGINT  NOT NULL REFERENCES tables (id),
    version         BIGINT  NOT NULL,
    arrow_schema    BLOB   NOT NULL,
    changed_at_us   BIGINT  NOT NULL,
    change          TEXT    NOT NULL,           -- what changed, for people
    PRIMARY KEY (table_id, version)
);
INSERT INTO table_schemas (table_id, version, arrow_schema, changed_at_us, change)
    SELECT id, 1, arrow_schema, created_at_us, 'the schema before schema history was kept'
    FROM tables WHERE arrow_schema IS NOT NULL;
