-- 0008: drop `inspections_plate_central` (made by 0007).
--
-- `latest_pickup` orders by COALESCE(started_at_central, started_at), which
-- that index cannot serve; `inspections_plate` already finds a vehicle's
-- few inspections. The index only cost every insert and update a write.

DROP INDEX IF EXISTS inspections_plate_central;
