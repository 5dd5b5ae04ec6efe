-- A slave being seeded table by table: each key range's progress (the
-- chunks loaded and the positions they were read at), written in the same
-- local transaction as the chunk's rows, so a restarted slave goes on from
-- the last chunk loaded. `meta` is the table's plan without its ranges.
-- Rows go when the seed is complete.
CREATE TABLE IF NOT EXISTS rowcast.seed (
  slave_name VARCHAR(255) NOT NULL,
  database_name VARCHAR(64) NOT NULL,
  table_name VARCHAR(64) NOT NULL,
  range_no INT UNSIGNED NOT NULL,
  meta LONGBLOB NOT NULL,
  state LONGBLOB NOT NULL,
  PRIMARY KEY (slave_name, database_name, table_name, range_no)
) ENGINE=InnoDB;

-- The seeded databases' triggers, created once every table is loaded (so
-- they do not fire on the copy).
CREATE TABLE IF NOT EXISTS rowcast.seed_triggers (
  slave_name VARCHAR(255) NOT NULL PRIMARY KEY,
  triggers LONGBLOB NOT NULL
) ENGINE=InnoDB;
