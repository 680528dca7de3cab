-- 0019: an index for the live KPI window's read at start (engine/acd/history.py
-- AcdRepository.kpi_buckets: a queue's entries that ended in the last kpi_window_s, summed per
-- minute). The only queue index led with entered_at (0002), so that read visited every entry
-- the queue ever had to find a day's worth; with this one it reads the day's rows only, in a
-- time bounded by the day's volume, not the table's age. Built in the migration's transaction
-- (writes to queue_entries wait in the acd outbox lane's journal meanwhile).
CREATE INDEX queue_entries_queue_ended_idx ON queue_entries (queue, ended_at);
