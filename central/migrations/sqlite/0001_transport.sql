-- The transport issue's schema: what the bridge persists.
--
-- Times are TEXT in RFC 3339 UTC with microseconds and a `Z`
-- (`2026-11-02T09:15:00.000000Z`), so they sort as text. Ids are TEXT:
-- UUIDs hyphenated, site and device in the id alphabet. Payloads are the
-- JSON as received and validated: the source of truth for the typed values.

-- One row per device that sent anything: its latest status and telemetry
-- (newest `at` wins) and the highest event seq stored.
CREATE TABLE devices (
    site                    TEXT NOT NULL,
    device                  TEXT NOT NULL,
    status                  TEXT,
    status_at               TEXT,
    status_received_at      TEXT,
    telemetry               TEXT,
    telemetry_at            TEXT,
    telemetry_received_at   TEXT,
    last_seq                INTEGER,
    first_seen_at           TEXT NOT NULL,
    PRIMARY KEY (site, device)
) WITHOUT ROWID;

-- Every event once, keyed by its msg_id (the idempotency key devices are
-- acked on). inspection_id is NULL for command results outside an
-- inspection.
CREATE TABLE events (
    msg_id          TEXT PRIMARY KEY NOT NULL,
    site            TEXT NOT NULL,
    device          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    inspection_id   TEXT,
    type            TEXT NOT NULL,
    at              TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    payload         TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX events_device_seq ON events (site, device, seq);
CREATE INDEX events_inspection ON events (inspection_id) WHERE inspection_id IS NOT NULL;

-- An inspection as its events describe it, created by whichever of its
-- events arrives first (events may arrive out of order), so every column
-- but the key and the device may still be unknown.
CREATE TABLE inspections (
    id                  TEXT PRIMARY KEY NOT NULL,
    site                TEXT NOT NULL,
    device              TEXT NOT NULL,
    kind                TEXT,
    started_at          TEXT,
    completed_at        TEXT,
    completion_reason   TEXT,
    frames_expected     INTEGER,
    frames_received     INTEGER NOT NULL DEFAULT 0,
    first_seen_at       TEXT NOT NULL,
    updated_at          TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX inspections_device ON inspections (site, device);

-- Payloads the bridge refused, kept for operators. The payload is cut to
-- the store's limit (64 KiB); payload_len is the length as received.
CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    payload_len     INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    detail          TEXT NOT NULL,
    received_at     TEXT NOT NULL
);

CREATE INDEX dead_letters_reason ON dead_letters (reason);
