-- The slave's checkpoint: how far each slave on this server has applied.
-- Updated in the same local transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS rowcast.checkpoint (
  slave_name      VARCHAR(128) NOT NULL PRIMARY KEY,
  log_seq         BIGINT UNSIGNED NOT NULL COMMENT 'sequence number in the master''s change log',
  source_file     VARCHAR(512) NOT NULL COMMENT 'binlog file on the primary',
  source_offset   BIGINT UNSIGNED NOT NULL COMMENT 'end of the last applied transaction',
  source_gtid     VARCHAR(128) NULL,
  source_time     BIGINT UNSIGNED NOT NULL DEFAULT 0 COMMENT 'commit time on the primary, epoch seconds',
  applied_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  ddl_pending_seq BIGINT UNSIGNED NULL COMMENT 'set while a DDL statement, which commits implicitly, is being applied'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
