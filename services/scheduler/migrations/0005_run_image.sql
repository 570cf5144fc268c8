-- The catalog image a run's sandbox names (RunRequested.sandbox.image; NULL
-- when it names none), stored when the request arrives so that placement can
-- match it against scheduler.nodes.images in its one query instead of
-- decoding every pending request. Runs requested before this migration keep
-- NULL and are placed as before, on any node.
ALTER TABLE scheduler.runs ADD COLUMN image text;
