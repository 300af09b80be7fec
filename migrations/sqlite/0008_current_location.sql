-- The current batch's location on the partition row, so that resolving a current version
-- reads that row only (not history and batches as well).
ALTER TABLE partitions ADD COLUMN current_location TEXT;
UPDATE partitions SET current_location =
  (SELECT b.location FROM batches b WHERE b.batch_id = partitions.current_batch_id)
  WHERE current_batch_id IS NOT NULL;
