-- The transport issue's schema on PostgreSQL: what the bridge persists.
-- The same tables as sqlite/0001 in native types: uuid ids, timestamptz
-- (microseconds, UTC), jsonb payloads (the JSON as received and validated,
-- the source of truth for the typed values), bytea, bigint.

-- One row per device that sent anything: its latest status and telemetry
-- (newest `at` wins) and the highest event seq stored.
CREATE TABLE devices (
    site                    text NOT NULL,
    device                  text NOT NULL,
    status                  jsonb,
    status_at               timestamptz,
    status_received_at      timestamptz,
    telemetry               jsonb,
    telemetry_at            timestamptz,
    telemetry_received_at   timestamptz,
    last_seq                bigint,
    first_seen_at           timestamptz NOT NULL,
    PRIMARY KEY (site, device)
);

-- Every event once, keyed by its msg_id (the idempotency key devices are
-- acked on). inspection_id is NULL for command results outside an
-- inspection.
CREATE TABLE events (
    msg_id          uuid PRIMARY KEY,
    site            text NOT NULL,
    device          text NOT NULL,
    seq             bigint NOT NULL,
    inspection_id   uuid,
    type            text NOT NULL,
    at              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    payload         jsonb NOT NULL
);

CREATE INDEX events_device_seq ON events (site, device, seq);
CREATE INDEX events_inspection ON events (inspection_id) WHERE inspection_id IS NOT NULL;

-- An inspection as its events describe it, created by whichever of its
-- events arrives first (events may arrive out of order), so every column
-- but the key and the device may still be unknown.
CREATE TABLE inspections (
    id                  uuid PRIMARY KEY,
    site                text NOT NULL,
    device              text NOT NULL,
    kind                text,
    started_at          timestamptz,
    completed_at        timestamptz,
    completion_reason   text,
    frames_expected     bigint,
    frames_received     bigint NOT NULL DEFAULT 0,
    first_seen_at       timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE INDEX inspections_device ON inspections (site, device);

-- Payloads the bridge refused, kept for operators. The payload is cut to
-- the store's limit (64 KiB); payload_len is the length as received.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic           text NOT NULL,
    payload         bytea NOT NULL,
    payload_len     bigint NOT NULL,
    reason          text NOT NULL,
    detail          text NOT NULL,
    received_at     timestamptz NOT NULL
);

CREATE INDEX dead_letters_reason ON dead_letters (reason);
