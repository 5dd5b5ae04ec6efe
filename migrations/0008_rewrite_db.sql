-- `--rewrite-db FROM=TO` rules a slave applies with: the primary's
-- database FROM is kept as TO. Stored when the slave starts without a
-- checkpoint; a slave with a checkpoint must start with the same rules
-- (other rules would split its history between two names). `rowcast
-- checksum` and `rowcast show` read them to map names.
CREATE TABLE IF NOT EXISTS rowcast.rewrite_db (
  slave_name VARCHAR(128) NOT NULL,
  from_db VARCHAR(64) NOT NULL COMMENT 'the database on the primary',
  to_db VARCHAR(64) NOT NULL COMMENT 'its name on this replica',
  PRIMARY KEY (slave_name, from_db)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
