-- Segment events that arrive by logical replication.  The apply worker runs
-- as a replica session (session_replication_role = replica), where ordinary
-- triggers do not fire, and fires row triggers only.  segment_events has,
-- beside its statement triggers, a row trigger and UPDATE and TRUNCATE
-- triggers enabled for replica sessions only: each event is applied once,
-- whatever the session's role, to the same memberships, toggles and
-- profiles.
--
-- A database of its own: the memberships, toggles and profiles of this test
-- stay out of the other tests' counts.
\set regression_db :DBNAME
CREATE DATABASE cdp_segments_replica;
\c cdp_segments_replica
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;

-- the triggers: statement triggers as usual (O), the replica ones (R)
SELECT t.tgname, t.tgenabled, (t.tgtype & 1) = 1 AS for_each_row, t.tgfoid::regproc AS function
  FROM pg_trigger t WHERE t.tgrelid = 'cdp_traits.segment_events'::regclass ORDER BY 1;

-- One script of segment events, for users prefixed with the run's name:
-- its state after each step under that name.  Event ids are derived from
-- the run and a number, so a step can repeat an earlier event.
CREATE FUNCTION pg_temp.ev(run text, n int) RETURNS uuid LANGUAGE sql AS $$
  SELECT md5(run || '/' || n)::uuid $$;
CREATE FUNCTION pg_temp.state(run text) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((SELECT string_agg(format('%s/%s/%s:%s%s', m.vendor, m.segment,
                                            substr(m.user_id, length(run) + 2),
                                            CASE WHEN m.member THEN 'in' ELSE 'out' END,
                                            coalesce('=' || m.value, '')),
                                     ' ' ORDER BY m.vendor, m.segment, m.user_id)
                    FROM cdp_traits.segment_memberships m WHERE m.user_id LIKE run || ':%'), '-')
         || ' | toggles ' ||
         coalesce((SELECT string_agg(format('%s/%s:%s', t.segment, substr(t.user_id, length(run) + 2),
                                            CASE WHEN t.member THEN '+' ELSE '-' END),
                                     ' ' ORDER BY t.seq)
                     FROM cdp_traits.segment_toggles t WHERE t.user_id LIKE run || ':%'), '-')
         || ' | profiles ' ||
         coalesce((SELECT string_agg(substr(p.user_id, length(run) + 2) || '=' || p.segments::text,
                                     ' ' ORDER BY p.user_id)
                     FROM cdp_traits.segment_profiles p WHERE p.user_id LIKE run || ':%'), '-') $$;
CREATE TABLE pg_temp.states (run text, step int, state text);
CREATE FUNCTION pg_temp.changes(run text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	-- 1: adds, one event per statement
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 1), run || ':u1', 1, 'a', '2025-01-01T10:00:00Z', false, NULL);
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 2), run || ':u2', 1, 'a', '2025-01-01T10:01:00Z', false, 'gold');
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 3), run || ':u1', 2, 'b', '2025-01-01T10:02:00Z', false, NULL);
	INSERT INTO pg_temp.states VALUES (run, 1, pg_temp.state(run));
	-- 2: several events in one statement: a remove, an add and a re-add of
	-- the same key, and an event of an id seen before (dropped)
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 4), run || ':u2', 1, 'a', '2025-01-01T11:00:00Z', true, NULL),
	       (pg_temp.ev(run, 5), run || ':u3', 1, 'a', '2025-01-01T11:01:00Z', false, NULL),
	       (pg_temp.ev(run, 6), run || ':u3', 1, 'a', '2025-01-01T11:02:00Z', false, 'again'),
	       (pg_temp.ev(run, 1), run || ':u9', 1, 'a', '2025-01-01T11:03:00Z', false, NULL);
	INSERT INTO pg_temp.states VALUES (run, 2, pg_temp.state(run));
	-- 3: a remove of a key that was never a member, an event older than the
	-- key's last (applied to no effect on membership), a repeated id alone
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 7), run || ':u4', 1, 'c', '2025-01-01T12:00:00Z', true, NULL);
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 8), run || ':u1', 1, 'a', '2024-12-31T00:00:00Z', true, NULL);
	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES (pg_temp.ev(run, 3), run || ':u1', 2, 'b', '2025-01-01T12:01:00Z', true, NULL);
	INSERT INTO pg_temp.states VALUES (run, 3, pg_temp.state(run));
END;
$$;

SELECT pg_temp.changes('origin');
SET session_replication_role = replica;
SELECT pg_temp.changes('replica');
RESET session_replication_role;
SELECT o.step, o.state, r.state = o.state AS replica_same
  FROM pg_temp.states o JOIN pg_temp.states r ON r.step = o.step AND r.run = 'replica'
 WHERE o.run = 'origin' ORDER BY o.step;
-- the rows kept: the accepted events of both runs, none of the repeats
SELECT count(*) AS events, count(DISTINCT event) AS distinct_ids FROM cdp_traits.segment_events;

-- events cannot be updated in a replica session either (an applied UPDATE
-- stops the subscription with this error)
SET session_replication_role = replica;
UPDATE cdp_traits.segment_events SET value = 'x' WHERE event = pg_temp.ev('replica', 2);
RESET session_replication_role;

-- a key written by both kinds of session: an add in a replica session, a
-- remove in an ordinary one, an add again in a replica session
SET session_replication_role = replica;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (pg_temp.ev('mixed', 1), 'mixed:u1', 1, 'm', '2025-02-01T10:00:00Z', false);
RESET session_replication_role;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (pg_temp.ev('mixed', 2), 'mixed:u1', 1, 'm', '2025-02-01T10:01:00Z', true);
SET session_replication_role = replica;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (pg_temp.ev('mixed', 3), 'mixed:u1', 1, 'm', '2025-02-01T10:02:00Z', false);
-- and an id the other kind of session accepted is a repeat here too
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (pg_temp.ev('mixed', 2), 'mixed:u1', 1, 'm', '2025-02-01T10:03:00Z', true);
RESET session_replication_role;
SELECT pg_temp.state('mixed');

-- triggers that fire in every session (ENABLE ALWAYS, as a DBA may set on
-- a subscriber) still apply each event once: the statement trigger leaves
-- replica sessions to the row trigger, which leaves the others to it
ALTER TABLE cdp_traits.segment_events ENABLE ALWAYS TRIGGER segment_events_insert,
  ENABLE ALWAYS TRIGGER segment_events_replica;
SELECT pg_temp.changes('always, origin');
SET session_replication_role = replica;
SELECT pg_temp.changes('always, replica');
RESET session_replication_role;
SELECT o.step, a.run, a.state = o.state AS same
  FROM pg_temp.states o JOIN pg_temp.states a ON a.step = o.step AND a.run LIKE 'always%'
 WHERE o.run = 'origin' ORDER BY o.step, a.run;
ALTER TABLE cdp_traits.segment_events ENABLE TRIGGER segment_events_insert,
  ENABLE REPLICA TRIGGER segment_events_replica;

-- TRUNCATE ... RESTART IDENTITY in a replica session (a replicated
-- TRUNCATE) resets the stored sequence numbers as in any other: an event
-- arriving after it is not taken for a late one
SET session_replication_role = replica;
TRUNCATE cdp_traits.segment_events RESTART IDENTITY;
SELECT count(*) AS keys_with_seq FROM cdp_traits.segment_memberships WHERE last_seq > 0;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (pg_temp.ev('mixed', 4), 'mixed:u1', 1, 'm', '2025-02-01T10:04:00Z', true);
RESET session_replication_role;
SELECT pg_temp.state('mixed');

-- the triggers are as installed
SELECT t.tgname, t.tgenabled FROM pg_trigger t
 WHERE t.tgrelid = 'cdp_traits.segment_events'::regclass ORDER BY 1;

\c :regression_db
DROP DATABASE cdp_segments_replica;
