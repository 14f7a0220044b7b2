-- The Reports issue: which model wrote a report, and every writer the
-- chain asked before it (attempts: writer, outcome, reason, detail,
-- seconds). `summary` holds the report's structured summary and `writer`
-- the writer that produced it (llm, fallback, embedded, template).
ALTER TABLE reports ADD COLUMN model text;
ALTER TABLE reports ADD COLUMN attempts jsonb NOT NULL DEFAULT '[]';
