-- The Staff API issue's schema: the review of findings before anyone is
-- charged, the review mark, charges, and what inspection search needs.
--
-- Conventions as in 0002: times are TEXT in RFC 3339 UTC with microseconds
-- and a `Z` (they sort as text), ids are hyphenated UUID TEXT, enums are
-- their snake_case names.
--
-- Invariants:
-- * `findings.status` is the finding's current status: the worker's, or
--   `confirmed` / `rejected` once staff decided. `worker_status` keeps the
--   worker's status from the first confirm or reject on (NULL until then);
--   `review_note` is the latest note staff gave (an annotation replaces it,
--   a confirm or reject with a note replaces it).
-- * Every review action is a `finding_reviews` row (oldest first by id),
--   written in the same transaction as the finding's change and its audit
--   entry. `finding_id` names a finding of the same inspection; it has no
--   foreign key, like `matched_finding`, but `record_result` (which replaces
--   findings) refuses an inspection with any review row, review mark or
--   charge, so reviewed findings are never replaced.
-- * The review mark is `inspections.reviewed_at` / `reviewed_by` /
--   `review_note` (all NULL until marked).
-- * At most one charge per inspection (`charges.inspection_id` is unique);
--   `findings` is a JSON array of the confirmed findings' ids.
-- * Search orders by `coalesce(started_at, first_seen_at)`, then id: the
--   expression indexes below must spell it exactly so.

ALTER TABLE findings ADD COLUMN worker_status TEXT;
ALTER TABLE findings ADD COLUMN review_note TEXT;

CREATE TABLE finding_reviews (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    finding_id      TEXT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('confirm', 'reject', 'annotate')),
    note            TEXT,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    status_before   TEXT NOT NULL,
    status_after    TEXT NOT NULL
);

CREATE INDEX finding_reviews_inspection ON finding_reviews (inspection_id, id);

ALTER TABLE inspections ADD COLUMN reviewed_at TEXT;
ALTER TABLE inspections ADD COLUMN reviewed_by TEXT;
ALTER TABLE inspections ADD COLUMN review_note TEXT;

CREATE TABLE charges (
    id              TEXT PRIMARY KEY NOT NULL,
    inspection_id   TEXT NOT NULL UNIQUE REFERENCES inspections (id) ON DELETE CASCADE,
    findings        TEXT NOT NULL,   -- JSON [uuid]
    note            TEXT,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL
);

-- Search: every filter narrows a walk along (at, id) in either direction.
CREATE INDEX inspections_at ON inspections (coalesce(started_at, first_seen_at), id);
CREATE INDEX inspections_site_at ON inspections (site, coalesce(started_at, first_seen_at), id);
CREATE INDEX inspections_plate_at ON inspections (plate, coalesce(started_at, first_seen_at), id)
    WHERE plate IS NOT NULL;
CREATE INDEX inspections_status_at ON inspections (status, coalesce(started_at, first_seen_at), id);
