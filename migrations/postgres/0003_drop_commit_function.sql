-- The commit's steps live in one place, the Rust catalog (metastore/src/catalog/commit), and
-- run the same on SQLite and PostgreSQL. The server-side copy of migration 0002 is removed.
DROP FUNCTION IF EXISTS batchstore_commit_partition(
    TEXT, BIGINT, BIGINT, BIGINT, BYTEA, INTEGER, TEXT, TEXT, TEXT, TEXT, TEXT);
