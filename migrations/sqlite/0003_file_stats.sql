-- Each committed file's column statistics, read from its Parquet footer at commit (JSON:
-- per column the null count and each row group's minimum and maximum, hex-encoded).
ALTER TABLE batch_files ADD COLUMN stats TEXT;
