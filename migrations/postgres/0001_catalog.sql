-- batchstore catalog, PostgreSQL. Timestamps are microseconds since the Unix epoch (UTC).
-- Kept in step with ../sqlite/0001_catalog.sql: same tables, columns and indexes.

CREATE TABLE namespaces (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL,
    created_at_us   BIGINT  NOT NULL,
    dropped_at_us   BIGINT
);
CREATE UNIQUE INDEX namespaces_live_name ON namespaces (name) WHERE dropped_at_us IS NULL;

CREATE TABLE tables (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id    BIGINT  NOT NULL REFERENCES namespaces (id),
    name            TEXT    NOT NULL,
    partition_keys  TEXT    NOT NULL,           -- JSON: [{"name": "ds", "type": "string"}]
    arrow_schema    BYTEA,                       -- Arrow IPC schema; NULL until fixed
    created_at_us   BIGINT  NOT NULL,
    dropped_at_us   BIGINT
);
CREATE UNIQUE INDEX tables_live_name ON tables (namespace_id, name) WHERE dropped_at_us IS NULL;

CREATE TABLE partitions (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id          BIGINT  NOT NULL REFERENCES tables (id),
    partition_hash    TEXT    NOT NULL,         -- sha256 of partition_values
    partition_values  TEXT    NOT NULL,         -- JSON array of canonical values, key order
    current_batch_id  TEXT,                     -- NULL until the first commit
    current_version   BIGINT  NOT NULL DEFAULT 0,
    rows              BIGINT  NOT NULL DEFAULT 0,
    bytes             BIGINT  NOT NULL DEFAULT 0,
    updated_at_us     BIGINT  NOT NULL
) WITH (fillfactor = 80);  -- room on each page for heap-only updates of the pointer
CREATE UNIQUE INDEX partitions_identity ON partitions (table_id, partition_hash);
-- Partitions in creation order: listing pages, counts, whole-table reads. No predicate on
-- current_version, so that moving a partition's pointer stays a heap-only (HOT) update.
CREATE INDEX partitions_by_table ON partitions (table_id, id);

CREATE TABLE batches (
    batch_id            TEXT    PRIMARY KEY,    -- UUIDv7
    table_id            BIGINT  NOT NULL REFERENCES tables (id),
    partition_id        BIGINT  NOT NULL REFERENCES partitions (id),
    state               TEXT    NOT NULL,       -- pending | committed | aborted | abandoned
    location            TEXT    NOT NULL,
    created_at_us       BIGINT  NOT NULL,
    lease_expires_at_us BIGINT  NOT NULL,
    version             BIGINT,                 -- the version its commit created
    committed_at_us     BIGINT,
    rows                BIGINT  NOT NULL DEFAULT 0,
    bytes               BIGINT  NOT NULL DEFAULT 0,
    arrow_schema        BYTEA
);
CREATE INDEX batches_pending_lease ON batches (lease_expires_at_us) WHERE state = 'pending';
CREATE INDEX batches_partition ON batches (partition_id);

CREATE TABLE batch_files (
    batch_id    TEXT    NOT NULL REFERENCES batches (batch_id),
    path        TEXT    NOT NULL,
    size_bytes  BIGINT  NOT NULL,
    rows        BIGINT  NOT NULL,
    PRIMARY KEY (batch_id, path)
);

CREATE TABLE history (
    partition_id    BIGINT  NOT NULL REFERENCES partitions (id),
    version         BIGINT  NOT NULL,
    batch_id        TEXT    NOT NULL REFERENCES batches (batch_id),
    operation       TEXT    NOT NULL,           -- write | rollback
    actor           TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    committed_at_us BIGINT  NOT NULL,
    rows            BIGINT  NOT NULL,
    bytes           BIGINT  NOT NULL,
    PRIMARY KEY (partition_id, version)
);
CREATE INDEX history_batch ON history (batch_id);

CREATE TABLE tags (
    table_id        BIGINT  NOT NULL REFERENCES tables (id),
    name            TEXT    NOT NULL,
    batch_id        TEXT    NOT NULL REFERENCES batches (batch_id),
    created_at_us   BIGINT  NOT NULL,
    PRIMARY KEY (table_id, name)
);
CREATE INDEX tags_batch ON tags (batch_id);

CREATE TABLE lineage (
    batch_id        TEXT    NOT NULL REFERENCES batches (batch_id),
    input_batch_id  TEXT    NOT NULL REFERENCES batches (batch_id),
    PRIMARY KEY (batch_id, input_batch_id)
);
CREATE INDEX lineage_outputs ON lineage (input_batch_id);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_us       BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);
