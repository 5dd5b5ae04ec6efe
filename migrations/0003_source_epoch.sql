-- The source epoch: bumped by the master each time it follows a new
-- primary (failover). Positions compare by epoch first, then file and
-- offset, because a new primary's binlog coordinates start afresh.
ALTER TABLE rowcast.checkpoint
  ADD COLUMN IF NOT EXISTS source_epoch INT UNSIGNED NOT NULL DEFAULT 0 AFTER log_seq;
