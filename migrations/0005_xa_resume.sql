-- Where a slave that holds prepared XA transactions (their rows wait in
-- memory for XA COMMIT) must read the change log again from after a
-- restart: the entry just before the oldest one held. NULL when none is
-- held.
ALTER TABLE rowcast.checkpoint
  ADD COLUMN IF NOT EXISTS xa_resume_seq BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS xa_resume_epoch INT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS xa_resume_file VARCHAR(512) NULL,
  ADD COLUMN IF NOT EXISTS xa_resume_offset BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS xa_resume_gtid VARCHAR(128) NULL;
