-- The current batch's location on the partition row, so that resolving a current version
-- reads that row only (not history and batches as well).
ALTER TABLE partitions ADD COLUMN current_location TEXT;
UPDATE partitions p SET current_location = b.location
  FROM batches b WHERE b.batch_id = p.current_batch_id;
