-- The Staff API issue's schema on PostgreSQL: the review of findings before
-- anyone is charged, the review mark, charges, and what inspection search
-- needs. The same tables and invariants as sqlite/0004 (documented there)
-- in native types.
--
-- Invariants:
-- * `findings.status` is the current status; `worker_status` keeps the
--   worker's from the first confirm or reject on; `review_note` the latest
--   note staff gave.
-- * Every review action is a `finding_reviews` row, written with the
--   finding's change and its audit entry while the inspection row is locked
--   (`FOR UPDATE`), as `record_result` locks it: a review and a result of
--   the same inspection never interleave, and `record_result` refuses an
--   inspection with any review row, review mark or charge.
-- * At most one charge per inspection; `findings` is a jsonb array of the
--   confirmed findings' ids.
-- * Search orders by `coalesce(started_at, first_seen_at)`, then id.

ALTER TABLE findings
    ADD COLUMN worker_status text,
    ADD COLUMN review_note text;

CREATE TABLE finding_reviews (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    finding_id      uuid NOT NULL,
    decision        text NOT NULL CHECK (decision IN ('confirm', 'reject', 'annotate')),
    note            text,
    actor           text NOT NULL,
    at              timestamptz NOT NULL,
    status_before   text NOT NULL,
    status_after    text NOT NULL
);

CREATE INDEX finding_reviews_inspection ON finding_reviews (inspection_id, id);

ALTER TABLE inspections
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN reviewed_by text,
    ADD COLUMN review_note text;

CREATE TABLE charges (
    id              uuid PRIMARY KEY,
    inspection_id   uuid NOT NULL UNIQUE REFERENCES inspections (id) ON DELETE CASCADE,
    findings        jsonb NOT NULL,
    note            text,
    actor           text NOT NULL,
    at              timestamptz NOT NULL
);

-- Search: every filter narrows a walk along (at, id) in either direction.
CREATE INDEX inspections_at ON inspections ((coalesce(started_at, first_seen_at)), id);
CREATE INDEX inspections_site_at ON inspections (site, (coalesce(started_at, first_seen_at)), id);
CREATE INDEX inspections_plate_at ON inspections (plate, (coalesce(started_at, first_seen_at)), id)
    WHERE plate IS NOT NULL;
CREATE INDEX inspections_status_at ON inspections (status, (coalesce(started_at, first_seen_at)), id);
