-- Inspections processed without all their events (the reliability issue).
--
-- * `inspections.incomplete`: set, with what was missing (for people), when
--   `Store::close_incomplete` queued a `receiving` inspection its board can
--   no longer complete (its agent stopped before `inspection_completed`, or
--   frames were dropped on the board): the board's telemetry, taken long
--   enough after the start, showed an empty outbox. NULL for every
--   inspection that arrived whole. Unlike `status_detail` it is kept
--   through processing, so staff reviewing the result see that views may
--   be missing.

ALTER TABLE inspections ADD COLUMN incomplete TEXT;
