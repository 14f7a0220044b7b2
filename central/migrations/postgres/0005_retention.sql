-- The retention, erasure (GDPR) and device command issue's schema on
-- PostgreSQL: when an inspection's personal data was erased, which frames'
-- images were deleted from the object store, and the commands staff sent to
-- devices. The same tables and invariants as sqlite/0005 (documented there)
-- in native types.
--
-- Invariants:
-- * `inspections.erased_at` is set by the first erasure (which locks the
--   inspection rows, as `record_result` does: a result is never stored
--   again for an erased inspection); `frames.image_purged_at` once the
--   caller deleted the frame's image from the object store.
-- * The retention purge picks its batch with `FOR UPDATE SKIP LOCKED`:
--   several api replicas purging at once take different rows.
-- * `commands.outcome` comes from the first `command_result` for the
--   command only; it has no CHECK (see sqlite/0005).

ALTER TABLE inspections ADD COLUMN erased_at timestamptz;
ALTER TABLE frames ADD COLUMN image_purged_at timestamptz;

CREATE TABLE commands (
    cmd_id          uuid PRIMARY KEY,
    site            text NOT NULL,
    device          text NOT NULL,
    kind            text NOT NULL,
    command         jsonb NOT NULL,
    requested_by    text NOT NULL,
    requested_at    timestamptz NOT NULL,
    expires_at      timestamptz,
    published_at    timestamptz,
    outcome         text,
    detail          text,
    result_at       timestamptz
);

CREATE INDEX commands_device ON commands (site, device, requested_at);

-- Retention: frames whose image is still stored; audit entries by age.
CREATE INDEX frames_image_stored ON frames (inspection_id) WHERE image_purged_at IS NULL;
CREATE INDEX audit_log_at ON audit_log (at);
