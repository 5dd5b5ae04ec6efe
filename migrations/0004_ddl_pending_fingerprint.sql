-- The catalog a pending DDL statement could change, as it was before the
-- statement's first attempt (catalog_fingerprint.rs). A retry after a crash
-- compares it with the catalog then to tell "applied before the crash" from
-- "fails for real".
ALTER TABLE rowcast.checkpoint
  ADD COLUMN IF NOT EXISTS ddl_pending_fingerprint VARCHAR(80) NULL AFTER ddl_pending_seq;
