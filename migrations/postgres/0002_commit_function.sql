-- One partition's share of a commit, as one server-side call: compare-and-swap the partition
-- pointer (next version, time never running backwards), mark the batch committed (only while
-- pending with a live lease), append history, record files and, when asked, the audit event.
-- It is one statement, so on its own it is atomic; inside a transaction it joins it.
-- Refusals raise SQLSTATE BS001 (the expected current batch no longer matches), BS002 (the
-- batch is no longer pending) or BS003 (the table was dropped); the caller turns them into the
-- catalog's errors.
CREATE FUNCTION batchstore_commit_partition(
    p_batch_id      TEXT,
    p_partition_id  BIGINT,
    p_rows          BIGINT,
    p_bytes         BIGINT,
    p_schema        BYTEA,
    p_guard         INTEGER,   -- 0: no expectation, 1: never written, 2: current = p_expected
    p_expected      TEXT,
    p_actor         TEXT,
    p_message       TEXT,
    p_files         TEXT,      -- JSON: [["part-00000.parquet", size_bytes, rows], …]
    p_audit_target  TEXT       -- NULL: no audit event
) RETURNS TABLE (new_version BIGINT, new_committed_at_us BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    v BIGINT;
    t BIGINT;
    now_us BIGINT := CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM partitions p JOIN tables t ON t.id = p.table_id
                    WHERE p.id = p_partition_id AND t.dropped_at_us IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'BS003', MESSAGE = 'batchstore: the table was dropped';
    END IF;

    UPDATE partitions
       SET current_batch_id = p_batch_id, current_version = current_version + 1,
           rows = p_rows, bytes = p_bytes, updated_at_us = GREATEST(now_us, updated_at_us + 1)
     WHERE id = p_partition_id
       AND (p_guard = 0
            OR (p_guard = 1 AND current_batch_id IS NULL)
            OR (p_guard = 2 AND current_batch_id = p_expected))
    RETURNING current_version, updated_at_us INTO v, t;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'BS001', MESSAGE = 'batchstore: expected current batch does not match';
    END IF;

    UPDATE batches
       SET state = 'committed', version = v, committed_at_us = t,
           rows = p_rows, bytes = p_bytes, arrow_schema = p_schema
     WHERE batch_id = p_batch_id AND state = 'pending' AND lease_expires_at_us > now_us;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'BS002', MESSAGE = 'batchstore: batch is not pending';
    END IF;

    INSERT INTO history (partition_id, version, batch_id, operation, actor, message,
                         committed_at_us, rows, bytes)
    VALUES (p_partition_id, v, p_batch_id, 'write', p_actor, p_message, t, p_rows, p_bytes);

    INSERT INTO batch_files (batch_id, path, size_bytes, rows)
    SELECT p_batch_id, f ->> 0, CAST(f ->> 1 AS BIGINT), CAST(f ->> 2 AS BIGINT)
      FROM jsonb_array_elements(CAST(p_files AS JSONB)) AS f;

    IF p_audit_target IS NOT NULL THEN
        INSERT INTO audit_events (at_us, actor, action, target, detail)
        VALUES (now_us, p_actor, 'commit', p_audit_target, p_message);
    END IF;

    RETURN QUERY SELECT v, t;
END
$$;
