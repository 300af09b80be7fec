-- A rollback's request id (RollbackRequest.request_id): a rollback sent again with the same id
-- is answered with the version the first one created, and appends nothing.
ALTER TABLE history ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX history_request ON history (partition_id, request_id) WHERE request_id IS NOT NULL;

-- Pending batches are bounded per principal as well as per table: BeginWrite counts them.
CREATE INDEX batches_pending_owner ON batches (began_by) WHERE state = 'pending';
