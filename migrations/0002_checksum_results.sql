-- What this replica computed for each checksum chunk, at the exact source
-- position where the primary's chunk row (rowcast_checksum.chunks) was
-- applied. `rowcast checksum` compares these with the primary's values.
CREATE TABLE IF NOT EXISTS rowcast.checksum_results (
  slave_name  VARCHAR(128) NOT NULL,
  run_id      BIGINT UNSIGNED NOT NULL,
  db          VARCHAR(64) NOT NULL,
  tbl         VARCHAR(64) NOT NULL,
  chunk       INT UNSIGNED NOT NULL,
  cnt         BIGINT UNSIGNED NULL,
  crc         DECIMAL(40,0) NULL,
  error       TEXT NULL,
  checked_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (slave_name, run_id, db, tbl, chunk)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
