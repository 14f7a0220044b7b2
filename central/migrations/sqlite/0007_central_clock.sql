-- Inspections dated on central's clock (the reliability issue: clocks
-- skewed between the boards and central; the store's module doc, CLOCKS).
--
-- * `inspections.started_at_central`: `started_at` (the board's clock) plus
--   the board's clock offset (central minus board) that its telemetry last
--   reported (`central_clock_offset_ms`) when the start was stored;
--   `started_at` itself when the board reported none. `latest_pickup`
--   orders by it, so a return whose board's clock is hours off still finds
--   the vehicle's latest pickup. Inspections stored before this migration
--   keep their board time.

ALTER TABLE inspections ADD COLUMN started_at_central TEXT;
UPDATE inspections SET started_at_central = started_at;
CREATE INDEX inspections_plate_central ON inspections (plate, kind, started_at_central)
    WHERE plate IS NOT NULL;
