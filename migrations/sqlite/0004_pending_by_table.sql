-- BeginWrite bounds the pending batches of a table; this index counts them.
CREATE INDEX batches_pending_table ON batches (table_id) WHERE state = 'pending';
