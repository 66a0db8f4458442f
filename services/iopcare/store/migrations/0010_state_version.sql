-- Each stored state carries the version of its document format (domain/state_document.py). Rows
-- written before this column existed hold version 1 documents; the processor reads them through
-- the upgrades and writes the current version the next time the patient's state changes.
ALTER TABLE patient_state ADD COLUMN state_version integer NOT NULL DEFAULT 1;
