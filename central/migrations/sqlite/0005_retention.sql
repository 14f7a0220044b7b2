-- The retention, erasure (GDPR) and device command issue's schema: when an
-- inspection's personal data was erased, which frames' images were deleted
-- from the object store, and the commands staff sent to devices.
--
-- Conventions as in 0002: times are TEXT in RFC 3339 UTC with microseconds
-- and a `Z` (they sort as text), ids are hyphenated UUID TEXT, enums are
-- their snake_case names, JSON columns hold the serde form.
--
-- Invariants:
-- * `inspections.erased_at` is set by the first erasure of the inspection
--   (NULL until then); the erasure nulls its plate, voted plate and vehicle
--   link, the text, plate, country and box of its plate reads, deletes its
--   reports, and replaces the plate by `[erased]` in its staff notes and its
--   audit entries, in the same transaction as its `gdpr.erasure` entry. A
--   result is never stored again for an erased inspection.
-- * `frames.image_purged_at`: the frame's image was deleted from the object
--   store (retention or erasure); the frame row stays. The store marks it
--   only after the caller deleted the image, so a failure in between leaves
--   the image listed (and its deletion is repeated, harmlessly).
-- * The retention purge deletes inspections whole (their events too:
--   `events.inspection_id` has no foreign key, the purge deletes them in
--   its transaction; everything else cascades), reports and audit entries,
--   oldest first, in bounded batches, each with its `retention.purge` entry.
-- * `commands` holds every command sent, stored (with its `device.command`
--   audit entry) before it is published. `outcome`, `detail` and `result_at`
--   come from the device's first `command_result` event for the command
--   (a later one, e.g. `duplicate`, never overwrites them). `outcome` has
--   no CHECK: an outcome a newer device knows and this schema does not must
--   never make the device's event batch fail (it would never be acked).

ALTER TABLE inspections ADD COLUMN erased_at TEXT;
ALTER TABLE frames ADD COLUMN image_purged_at TEXT;

CREATE TABLE commands (
    cmd_id          TEXT PRIMARY KEY NOT NULL,
    site            TEXT NOT NULL,
    device          TEXT NOT NULL,
    kind            TEXT NOT NULL,   -- the command's `type`
    command         TEXT NOT NULL,   -- JSON wire Command
    requested_by    TEXT NOT NULL,
    requested_at    TEXT NOT NULL,
    expires_at      TEXT,
    published_at    TEXT,
    outcome         TEXT,            -- CommandOutcome: executed | refused | expired | duplicate
    detail          TEXT,
    result_at       TEXT
) WITHOUT ROWID;

CREATE INDEX commands_device ON commands (site, device, requested_at);

-- Retention: frames whose image is still stored (the purge looks at these
-- only, not at the years of frames already purged); audit entries by age;
-- vehicles left without an inspection (PostgreSQL has this one since 0002).
CREATE INDEX frames_image_stored ON frames (inspection_id) WHERE image_purged_at IS NULL;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX inspections_vehicle ON inspections (vehicle_id) WHERE vehicle_id IS NOT NULL;
