-- As-of reads find a partition's last entry stamped at or before a time by index.
CREATE INDEX history_as_of ON history (partition_id, committed_at_us);
