-- Transactions a slave skipped on purpose (`rowcast slave --skip-at`):
-- each is written in the same local transaction as the checkpoint that
-- moves past it, so a crash can neither skip it twice nor lose the record.
CREATE TABLE IF NOT EXISTS rowcast.skipped (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  slave_name    VARCHAR(128) NOT NULL,
  position      VARCHAR(700) NOT NULL COMMENT 'as --skip-at names it',
  source_epoch  INT UNSIGNED NOT NULL,
  source_file   VARCHAR(512) NOT NULL,
  source_offset BIGINT UNSIGNED NOT NULL,
  source_gtid   VARCHAR(128) NULL,
  log_seq       BIGINT UNSIGNED NOT NULL COMMENT 'change log sequence of its last entry',
  skipped_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  reason        TEXT NOT NULL COMMENT 'the error it stopped the slave with',
  KEY by_slave (slave_name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The transaction the slave last stopped on and why, so a later
-- `--skip-at` of it records the error it skips. Cleared by the skip.
ALTER TABLE rowcast.checkpoint
  ADD COLUMN IF NOT EXISTS failed_position VARCHAR(700) NULL,
  ADD COLUMN IF NOT EXISTS failed_reason TEXT NULL;
