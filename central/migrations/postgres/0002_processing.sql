-- The Central processing issue's schema on PostgreSQL: inspection status,
-- results, the vehicles they identify, the job queue and the audit log.
-- The same tables and invariants as sqlite/0002 (documented there) in
-- native types: f32 values are `real` (read back bit for bit), JSON parts
-- are jsonb with the serde form of the `store::processing` types.
--
-- Invariants:
-- * At most one `queued` or `running` job per (kind, inspection): the
--   partial unique index `jobs_one_active`. Enqueueing again is a no-op.
-- * An inspection is `receiving` until started, completed and every
--   announced frame is stored; the transaction that stores the last of them
--   sets it `queued` and enqueues its `process_inspection` job.
-- * Workers claim with `SELECT ... FOR UPDATE SKIP LOCKED`: two never hold
--   the same job, and none waits for another's claim.
-- * frames, findings and plate_reads of an inspection are replaced whole by
--   each `record_result`; `idx` keeps the result's order.
-- * `findings.matched_finding` has no foreign key: reprocessing the pickup
--   replaces its rows.

CREATE TABLE sites (
    site            text PRIMARY KEY,
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL
);

INSERT INTO sites (site, first_seen_at, last_seen_at)
SELECT site, min(received_at), max(received_at) FROM events GROUP BY site;
INSERT INTO sites (site, first_seen_at, last_seen_at)
SELECT site, min(first_seen_at), max(first_seen_at) FROM devices GROUP BY site
ON CONFLICT (site) DO NOTHING;

CREATE TABLE vehicles (
    id              uuid PRIMARY KEY,
    plate           text NOT NULL UNIQUE,
    country         text NOT NULL,
    display         text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL
);

ALTER TABLE inspections
    ADD COLUMN status text NOT NULL DEFAULT 'receiving'
        CHECK (status IN ('receiving', 'queued', 'waiting_for_images', 'processing',
                          'processed', 'images_missing', 'failed')),
    ADD COLUMN status_detail text,
    ADD COLUMN vehicle_id uuid REFERENCES vehicles (id),
    ADD COLUMN plate text,
    ADD COLUMN processed_at timestamptz,
    ADD COLUMN worker text,
    ADD COLUMN damage_model jsonb,
    ADD COLUMN plate_models jsonb,
    ADD COLUMN comparison jsonb,
    ADD COLUMN summary jsonb,
    ADD COLUMN plate_json jsonb;

CREATE INDEX inspections_plate ON inspections (plate, kind, started_at) WHERE plate IS NOT NULL;
CREATE INDEX inspections_site_started ON inspections (site, started_at);
CREATE INDEX inspections_started ON inspections (started_at);
CREATE INDEX inspections_status ON inspections (status, started_at);
CREATE INDEX inspections_vehicle ON inspections (vehicle_id) WHERE vehicle_id IS NOT NULL;

CREATE TABLE frames (
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    camera          text NOT NULL,
    position        text NOT NULL,
    sha256          text NOT NULL,
    rank            bigint NOT NULL,
    state           text NOT NULL,
    state_json      jsonb NOT NULL,
    width           bigint,
    height          bigint,
    sharpness       real,
    brightness      real,
    vehicle_x1      real,
    vehicle_y1      real,
    vehicle_x2      real,
    vehicle_y2      real,
    PRIMARY KEY (inspection_id, idx)
);

CREATE INDEX frames_sha256 ON frames (sha256);

CREATE TABLE findings (
    id              uuid PRIMARY KEY,
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    camera          text NOT NULL,
    position        text NOT NULL,
    sha256          text NOT NULL,
    class           text NOT NULL,
    confidence      real NOT NULL,
    source          text NOT NULL,
    status          text NOT NULL,
    x1              real NOT NULL,
    y1              real NOT NULL,
    x2              real NOT NULL,
    y2              real NOT NULL,
    vx1             real,
    vy1             real,
    vx2             real,
    vy2             real,
    matched_finding uuid
);

CREATE INDEX findings_inspection ON findings (inspection_id, idx);
CREATE INDEX findings_status ON findings (status, inspection_id);

CREATE TABLE plate_reads (
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    camera          text NOT NULL,
    sha256          text NOT NULL,
    outcome         text NOT NULL,
    x1              real,
    y1              real,
    x2              real,
    y2              real,
    box_source      text,
    raw_text        text,
    plate           text,
    country         text,
    confidence      real NOT NULL,
    PRIMARY KEY (inspection_id, idx)
);

CREATE INDEX plate_reads_plate ON plate_reads (plate) WHERE plate IS NOT NULL;

-- Written by the Reports issue.
CREATE TABLE reports (
    id              uuid PRIMARY KEY,
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    writer          text NOT NULL,
    language        text NOT NULL,
    summary         jsonb NOT NULL,
    narrative       text NOT NULL,
    created_at      timestamptz NOT NULL
);

CREATE INDEX reports_inspection ON reports (inspection_id, created_at);

CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    inspection_id   uuid NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    state           text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    run_at          timestamptz NOT NULL,
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    enqueued_at     timestamptz NOT NULL,
    finished_at     timestamptz
);

CREATE UNIQUE INDEX jobs_one_active ON jobs (kind, inspection_id)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, lease_until) WHERE state = 'running';
CREATE INDEX jobs_inspection ON jobs (inspection_id, enqueued_at);

-- Inspections completed before this migration: queue them for processing.
UPDATE inspections SET status = 'queued'
WHERE started_at IS NOT NULL AND completed_at IS NOT NULL
  AND frames_expected IS NOT NULL AND frames_received >= frames_expected;

INSERT INTO jobs (id, kind, inspection_id, state, attempts, max_attempts, run_at, enqueued_at)
SELECT gen_random_uuid(), 'process_inspection', id, 'queued', 0, 5, updated_at, updated_at
FROM inspections WHERE status = 'queued';

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    target          text NOT NULL,
    before          jsonb,
    after           jsonb
);

CREATE INDEX audit_log_target ON audit_log (target, id);
