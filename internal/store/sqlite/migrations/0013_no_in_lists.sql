-- SQLite evaluates "x IN (a, b, c)" with three or more constants by building
-- a temporary b-tree of the list (a pager of its own, opened and freed) at
-- every execution of the statement. The CHECK constraints of runs, attempts
-- and event_lineage, and the predicate of the partial index runs_runnable,
-- were such lists: every insert of a run or an attempt and every change of
-- a run's state (claim, finish) built one to three of them, about a tenth
-- of a delivered event's CPU. Written as ORs of equalities they compile to
-- plain comparisons.
--
-- A CHECK cannot be altered in SQLite. Replacing one by an equivalent that
-- every stored row already satisfies changes nothing on disk, and SQLite
-- documents editing the schema's text for that ("Making Other Kinds Of
-- Table Schema Changes", lang_altertable.html): writable_schema, then the
-- schema reloaded (RESET) for this connection; the index rebuilt below
-- changes the schema cookie, so other connections reload it too. Each
-- replace() matches the text migration 0001 or 0007 wrote, once (only
-- they create these tables); a test checks that no IN list is left. One
-- that matched nothing would leave its CHECK as it was: correct, only as
-- costly as before.
--
-- A downgrade is slower, not wrong. A binary from before this migration
-- writes its queue's queries with state IN ('pending', 'retrying',
-- 'running'), which SQLite does not find to imply this index's OR: its
-- claim, NextDue and QueueStats then scan every run the store keeps (a
-- million runs: about 250 ms a claim, on the writer, instead of 1 ms; its
-- ReleaseLeases, whose state = 'running' implies the OR, and its listings
-- still read the index). The rows and the constraints mean what they
-- meant. To run an older binary for a while, give the index its old
-- predicate:
--   DROP INDEX runs_runnable;
--   CREATE INDEX runs_runnable ON runs (due_at, state, event_id)
--       WHERE state IN ('pending', 'retrying', 'running');
-- and, before upgrading again, run
--   DELETE FROM schema_migrations WHERE version = '0013_no_in_lists';
-- so that this migration runs again (its replace()s find nothing left to
-- replace; the index is rebuilt). Left with the old predicate, this
-- binary's ReleaseLeases and WakeHeld would scan every run.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (state IN (''pending'', ''running'', ''retrying'', ''succeeded'', ''dead''))',
    'CHECK (state = ''pending'' OR state = ''running'' OR state = ''retrying'' OR state = ''succeeded'' OR state = ''dead'')')
  WHERE type = 'table' AND name = 'runs';
UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (outcome IN (''succeeded'', ''retry'', ''dead''))',
    'CHECK (outcome = ''succeeded'' OR outcome = ''retry'' OR outcome = ''dead'')')
  WHERE type = 'table' AND name = 'attempts';
UPDATE sqlite_schema SET sql = replace(sql,
    'CHECK (outcome IN ('''', ''echo'', ''conflict''))',
    'CHECK (outcome = '''' OR outcome = ''echo'' OR outcome = ''conflict'')')
  WHERE type = 'table' AND name = 'event_lineage';
PRAGMA writable_schema = RESET;
-- The queue's predicate, as runnable (runs.go) spells it: a query uses the
-- partial index only when its WHERE repeats this term exactly, or implies
-- it (state = 'running' implies an OR that has it).
DROP INDEX runs_runnable;
CREATE INDEX runs_runnable ON runs (due_at, state, event_id)
    WHERE state = 'pending' OR state = 'retrying' OR state = 'running';
