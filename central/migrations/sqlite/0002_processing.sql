-- The Central processing issue's schema: inspection status, results, the
-- vehicles they identify, the job queue and the audit log.
--
-- Conventions as in 0001: times are TEXT in RFC 3339 UTC with microseconds
-- and a `Z` (they sort as text), ids are hyphenated UUID TEXT, enums are
-- their snake_case names, JSON columns hold the serde form of the
-- `store::processing` types. Boxes are four REAL columns (x1, y1, x2, y2);
-- an f32 stored as REAL reads back bit for bit.
--
-- Invariants:
-- * At most one `queued` or `running` job per (kind, inspection): the
--   partial unique index `jobs_one_active`. Enqueueing again is a no-op.
-- * An inspection is `receiving` until started, completed and every
--   announced frame is stored; the transaction that stores the last of them
--   sets it `queued` and enqueues its `process_inspection` job.
-- * frames, findings and plate_reads of an inspection are replaced whole by
--   each `record_result` (one transaction); `idx` keeps the result's order.
-- * `findings.matched_finding` names a finding of the pickup inspection; it
--   has no foreign key because reprocessing the pickup replaces its rows.

-- Sites seen by any device message.
CREATE TABLE sites (
    site            TEXT PRIMARY KEY NOT NULL,
    first_seen_at   TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO sites (site, first_seen_at, last_seen_at)
SELECT site, min(received_at), max(received_at) FROM events GROUP BY site;
INSERT OR IGNORE INTO sites (site, first_seen_at, last_seen_at)
SELECT site, min(first_seen_at), max(first_seen_at) FROM devices GROUP BY site;

-- Vehicles, identified by their canonical plate (`A-Z0-9`).
CREATE TABLE vehicles (
    id              TEXT PRIMARY KEY NOT NULL,
    plate           TEXT NOT NULL UNIQUE,
    country         TEXT NOT NULL,
    display         TEXT NOT NULL,
    first_seen_at   TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL
);

ALTER TABLE inspections ADD COLUMN status TEXT NOT NULL DEFAULT 'receiving'
    CHECK (status IN ('receiving', 'queued', 'waiting_for_images', 'processing',
                      'processed', 'images_missing', 'failed'));
ALTER TABLE inspections ADD COLUMN status_detail TEXT;
ALTER TABLE inspections ADD COLUMN vehicle_id TEXT REFERENCES vehicles (id);
-- The vehicle's canonical plate, denormalised for search.
ALTER TABLE inspections ADD COLUMN plate TEXT;
-- The result (NULL until processed): InspectionResult's scalar parts.
ALTER TABLE inspections ADD COLUMN processed_at TEXT;
ALTER TABLE inspections ADD COLUMN worker TEXT;
ALTER TABLE inspections ADD COLUMN damage_model TEXT;     -- JSON DamageModel
ALTER TABLE inspections ADD COLUMN plate_models TEXT;     -- JSON [string]
ALTER TABLE inspections ADD COLUMN comparison TEXT;       -- JSON Comparison
ALTER TABLE inspections ADD COLUMN summary TEXT;          -- JSON Summary
ALTER TABLE inspections ADD COLUMN plate_json TEXT;       -- JSON VehiclePlate

CREATE INDEX inspections_plate ON inspections (plate, kind, started_at) WHERE plate IS NOT NULL;
CREATE INDEX inspections_site_started ON inspections (site, started_at);
CREATE INDEX inspections_started ON inspections (started_at);
CREATE INDEX inspections_status ON inspections (status, started_at);

-- One row per image the inspection named.
CREATE TABLE frames (
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    camera          TEXT NOT NULL,
    position        TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    rank            INTEGER NOT NULL,
    state           TEXT NOT NULL,   -- ok | corrupt | rejected | missing
    state_json      TEXT NOT NULL,   -- JSON FrameState (with its reasons)
    width           INTEGER,
    height          INTEGER,
    sharpness       REAL,
    brightness      REAL,
    vehicle_x1      REAL,
    vehicle_y1      REAL,
    vehicle_x2      REAL,
    vehicle_y2      REAL,
    PRIMARY KEY (inspection_id, idx)
) WITHOUT ROWID;

CREATE INDEX frames_sha256 ON frames (sha256);

CREATE TABLE findings (
    id              TEXT PRIMARY KEY NOT NULL,
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    camera          TEXT NOT NULL,
    position        TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    class           TEXT NOT NULL,
    confidence      REAL NOT NULL,
    source          TEXT NOT NULL,   -- model | change
    status          TEXT NOT NULL,   -- FindingStatus
    x1              REAL NOT NULL,
    y1              REAL NOT NULL,
    x2              REAL NOT NULL,
    y2              REAL NOT NULL,
    -- Relative to the vehicle's box (0..1), all four or none.
    vx1             REAL,
    vy1             REAL,
    vx2             REAL,
    vy2             REAL,
    matched_finding TEXT
);

CREATE INDEX findings_inspection ON findings (inspection_id, idx);
CREATE INDEX findings_status ON findings (status, inspection_id);

CREATE TABLE plate_reads (
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    camera          TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    outcome         TEXT NOT NULL,   -- read | unreadable | not_found
    x1              REAL,
    y1              REAL,
    x2              REAL,
    y2              REAL,
    box_source      TEXT,            -- detector | text_detection
    raw_text        TEXT,
    plate           TEXT,
    country         TEXT,
    confidence      REAL NOT NULL,
    PRIMARY KEY (inspection_id, idx)
) WITHOUT ROWID;

CREATE INDEX plate_reads_plate ON plate_reads (plate) WHERE plate IS NOT NULL;

-- Reports (written by the Reports issue; the schema is here so that one
-- migration brings the processing tables).
CREATE TABLE reports (
    id              TEXT PRIMARY KEY NOT NULL,
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    writer          TEXT NOT NULL,
    language        TEXT NOT NULL,
    summary         TEXT NOT NULL,   -- JSON
    narrative       TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE INDEX reports_inspection ON reports (inspection_id, created_at);

-- The durable job queue. `queued`: waits for run_at; `running`: leased to
-- lease_owner until lease_until (an expired lease is claimable again);
-- `done`; `dead`: attempts used up, kept for operators. attempts counts
-- claims (a deferral gives its attempt back).
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    inspection_id   TEXT NOT NULL REFERENCES inspections (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_at          TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     TEXT,
    last_error      TEXT,
    enqueued_at     TEXT NOT NULL,
    finished_at     TEXT
);

CREATE UNIQUE INDEX jobs_one_active ON jobs (kind, inspection_id)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, lease_until) WHERE state = 'running';
CREATE INDEX jobs_inspection ON jobs (inspection_id, enqueued_at);

-- Inspections completed before this migration: queue them for processing
-- (job ids are random version-4 UUIDs; the application uses version 7).
UPDATE inspections SET status = 'queued'
WHERE started_at IS NOT NULL AND completed_at IS NOT NULL
  AND frames_expected IS NOT NULL AND frames_received >= frames_expected;

INSERT INTO jobs (id, kind, inspection_id, state, attempts, max_attempts, run_at, enqueued_at)
SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
       || substr(lower(hex(randomblob(2))), 2) || '-'
       || substr('89ab', 1 + (abs(random()) % 4), 1)
       || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
       'process_inspection', id, 'queued', 0, 5, updated_at, updated_at
FROM inspections WHERE status = 'queued';

-- Who changed what: before and after as JSON.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    before          TEXT,
    after           TEXT
);

CREATE INDEX audit_log_target ON audit_log (target, id);
