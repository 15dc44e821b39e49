-- Segments and toggles (SPEC section 6): memberships, profiles and the
-- toggle log, rule by rule; validation; re-delivery; bulk loads.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- ev(n, ...): segmentation event number n as JSON (its id ends in n)
CREATE FUNCTION ev(n int, usr text, vendor int, seg text, ts text,
                   remove boolean DEFAULT false, val text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object(
           'event', '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'),
           'user', usr, 'segment', jsonb_build_object('vendor', vendor, 'name', seg),
           'timestamp', ts, 'remove', CASE WHEN remove THEN true END, 'value', val))
$$;
CREATE FUNCTION ingest(n int, usr text, vendor int, seg text, ts text,
                       remove boolean DEFAULT false, val text DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$ SELECT cdp_traits.ingest_segment_event(ev(n, usr, vendor, seg, ts, remove, val)) $$;
-- readable views: events by their number
CREATE FUNCTION num(u uuid) RETURNS int LANGUAGE sql AS $$ SELECT right(u::text, 12)::int $$;
CREATE VIEW ms AS
SELECT vendor, segment, user_id, first, last, member, value, num(last_event) AS last_event
  FROM cdp_traits.segment_memberships ORDER BY vendor, segment, user_id;
CREATE VIEW tg AS
SELECT vendor, segment, user_id, member, num(event) AS event, event_time,
       num(previous_event) AS previous, previous_time, value
  FROM cdp_traits.segment_toggles ORDER BY seq;

-- 1. The reference's toggle rules.  Initial add: a member, not a toggle.
SELECT ingest(1, 'alice', 32, 'trains', '2021-01-16T12:34:56Z') IS NOT NULL AS stored;
-- duplicate add (a new event): not a toggle, but it is now the last event
SELECT ingest(2, 'alice', 32, 'trains', '2021-01-16T12:34:56Z') IS NOT NULL AS stored;
-- initial remove, then an add: no toggles either (never added before the add)
SELECT ingest(3, 'bob', 32, 'trains', '2021-01-16T12:34:56Z', remove => true);
SELECT ingest(4, 'bob', 32, 'trains', '2021-01-16T12:34:56Z');
SELECT count(*) AS toggles FROM cdp_traits.segment_toggles;
SELECT * FROM ms;
-- add -> remove toggles (previous: the last add, 2); remove -> remove does
-- not, but replaces the previous event; remove -> add toggles (previous: 6)
SELECT ingest(5, 'alice', 32, 'trains', '2021-01-17T12:34:56Z', remove => true);
SELECT ingest(6, 'alice', 32, 'trains', '2021-01-17T12:34:56Z', remove => true);
SELECT ingest(7, 'alice', 32, 'trains', '2021-01-18T12:34:56Z');
-- bob was added (4): his remove toggles, with the add as previous
SELECT ingest(8, 'bob', 32, 'trains', '2021-01-18T12:34:56Z', remove => true);
SELECT * FROM tg;
SELECT * FROM ms;

-- 2. A user only ever removed: no first add, not a member, never a toggle.
SELECT ingest(10, 'carly', 42, 'planes', '2021-01-18T12:34:56Z', remove => true);
SELECT ingest(11, 'carly', 42, 'planes', '2021-01-19T12:34:56Z', remove => true);
SELECT * FROM ms WHERE user_id = 'carly';
SELECT count(*) AS carly_toggles FROM cdp_traits.segment_toggles WHERE user_id = 'carly';

-- 3. The value: the last add that carried one, kept through removes and
-- through adds without a value; a toggle carries its add's value.
SELECT ingest(20, 'dave', 42, 'planes', '2021-02-01T00:00:00Z', val => 'gold');
SELECT ingest(21, 'dave', 42, 'planes', '2021-02-02T00:00:00Z');
SELECT value FROM ms WHERE user_id = 'dave';
SELECT ingest(22, 'dave', 42, 'planes', '2021-02-03T00:00:00Z', remove => true);
SELECT value, member FROM ms WHERE user_id = 'dave';
SELECT ingest(23, 'dave', 42, 'planes', '2021-02-04T00:00:00Z');
SELECT value, member FROM ms WHERE user_id = 'dave';
SELECT ingest(24, 'dave', 42, 'planes', '2021-02-05T00:00:00Z', val => 'platinum');
SELECT ingest(25, 'dave', 42, 'planes', '2021-02-06T00:00:00Z', remove => true);
SELECT ingest(26, 'dave', 42, 'planes', '2021-02-07T00:00:00Z', val => 'silver');
SELECT value, member FROM ms WHERE user_id = 'dave';
SELECT event, member, value, previous FROM tg WHERE user_id = 'dave';

-- 4. One segment name under two vendors: two memberships; the profile is
-- sorted by (name, vendor), non-members included.
SELECT ingest(30, 'erin', 7, 'autos', '2021-03-01T00:00:00Z');
SELECT ingest(31, 'erin', 3, 'autos', '2021-03-01T00:00:00Z', val => 'v3');
SELECT ingest(32, 'erin', 5, 'Boats', '2021-03-01T00:00:00Z', remove => true);
SELECT ingest(33, 'erin', 3, 'autos', '2021-03-02T00:00:00Z', remove => true);
SELECT * FROM ms WHERE user_id = 'erin';
SELECT jsonb_pretty(segments) FROM cdp_traits.segment_profiles WHERE user_id = 'erin';

-- 5. Time zones: first and last compare instants, not texts.
-- 10:00+05:30 is 04:30Z, before 05:00Z (but sorts after it as text);
-- 23:00-08:00 is 07:00Z the next day.
SELECT ingest(40, 'fay', 1, 'tz', '2021-04-01T05:00:00Z');
SELECT ingest(41, 'fay', 1, 'tz', '2021-04-01T10:00:00+05:30');
SELECT ingest(42, 'fay', 1, 'tz', '2021-04-01T23:00:00-08:00', remove => true);
SELECT ingest(43, 'fay', 1, 'tz', '2021-04-02T06:59:59.999999Z');
SELECT first, last, member FROM ms WHERE user_id = 'fay';
-- arrival order decides the status and the toggles, not the timestamps:
-- the add 43 arrived last, although it is earlier than the remove 42
SELECT event, member, event_time, previous, previous_time FROM tg WHERE user_id = 'fay';
-- lower-case t and z, fractions rounded to microseconds, a leap second;
-- segment_events keeps the instant (cdp_traits.rfc3339, written in UTC)
SELECT ingest(44, 'fay', 1, 'tz2', '2021-04-01t05:00:00.1234567z') AS s44,
       ingest(45, 'fay', 1, 'tz2', '2016-12-31T23:59:60Z') AS s45,
       ingest(46, 'fay', 1, 'tz2', '2024-02-29T23:59:59.9999995+14:00') AS s46 \gset
SELECT "timestamp" FROM cdp_traits.segment_events WHERE seq IN (:s44, :s45, :s46) ORDER BY seq;
-- it compares as timestamptz; timestamptz and text convert to it on assignment
SELECT "timestamp" < timestamptz '2021-04-01 05:00:01+00' AS earlier, "timestamp" - interval '1 hour' AS hour_before
  FROM cdp_traits.segment_events WHERE seq = :s44;
SELECT (timestamptz '2021-04-01 12:00+02')::cdp_traits.rfc3339, ('1999-12-31T23:59:59-00:30')::text::cdp_traits.rfc3339;
SELECT 'infinity'::timestamptz::cdp_traits.rfc3339;

-- 6. Idempotent re-delivery: a repeated id is ignored (NULL), nothing changes.
SELECT count(*) AS events, (SELECT count(*) FROM cdp_traits.segment_toggles) AS toggles
  FROM cdp_traits.segment_events \gset before_
SELECT ingest(8, 'bob', 32, 'trains', '2021-01-18T12:34:56Z', remove => true) AS repeated;
-- even with other content (the id decides)
SELECT ingest(7, 'alice', 32, 'trains', '2021-05-01T00:00:00Z', remove => true) AS repeated;
SELECT count(*) - :before_events AS new_events,
       (SELECT count(*) FROM cdp_traits.segment_toggles) - :before_toggles AS new_toggles
  FROM cdp_traits.segment_events;
SELECT member, last_event FROM ms WHERE user_id = 'alice';
-- within one statement: the first (in arrival order) counts, and an id seen
-- before is ignored; the repeats do not stay in segment_events
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES ('00000000-0000-4000-8000-000000000050', 'gus', 1, 'dup', '2021-06-01T00:00:00Z', false),
       ('00000000-0000-4000-8000-000000000050', 'gus', 1, 'dup', '2021-06-02T00:00:00Z', true),
       ('00000000-0000-4000-8000-000000000051', 'gus', 1, 'dup', '2021-06-03T00:00:00Z', true),
       ('00000000-0000-4000-8000-000000000001', 'gus', 1, 'dup', '2021-06-04T00:00:00Z', false),
       ('00000000-0000-4000-8000-000000000052', 'gus', 1, 'dup', '2021-06-05T00:00:00Z', false);
SELECT num(event), "timestamp", remove FROM cdp_traits.segment_events WHERE user_id = 'gus' ORDER BY seq;
SELECT event, member, previous FROM tg WHERE user_id = 'gus';
SELECT count(*) AS ids, count(DISTINCT event) AS distinct_ids FROM cdp_traits.segment_event_ids;
SELECT count(*) AS unaccepted FROM cdp_traits.segment_events e
 WHERE NOT EXISTS (SELECT FROM cdp_traits.segment_event_ids i WHERE i.event = e.event AND i.seq = e.seq);

-- 7. Bulk loads: COPY and INSERT ... SELECT, one statement trigger each;
-- within a statement, arrival order (seq) decides.
COPY cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value) FROM stdin (FORMAT csv);
00000000-0000-4000-8000-000000000060,hal,2,news,2021-07-01T00:00:00Z,false,a
00000000-0000-4000-8000-000000000061,ivy,2,news,2021-07-01T00:00:00Z,true,
00000000-0000-4000-8000-000000000062,hal,2,news,2021-07-02T00:00:00Z,true,
00000000-0000-4000-8000-000000000063,ivy,2,news,2021-07-02T00:00:00Z,false,
00000000-0000-4000-8000-000000000064,hal,2,news,2021-07-03T00:00:00Z,false,
00000000-0000-4000-8000-000000000060,hal,2,news,2021-07-04T00:00:00Z,true,
00000000-0000-4000-8000-000000000065,ivy,2,news,2021-07-03T00:00:00Z,true,
\.
SELECT * FROM ms WHERE segment = 'news';
SELECT event, user_id, member, previous, value FROM tg WHERE segment = 'news';
-- the same through the large-batch path (segments lock instead of key
-- locks, plain insert of the ids) gives the same result
SET cdp_traits.max_segment_locks = 0;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
SELECT ('00000000-0000-4000-8000-0000000001' || right(event::text, 2))::uuid, user_id, vendor, 'news2', "timestamp", remove, value
  FROM cdp_traits.segment_events WHERE segment = 'news' ORDER BY seq;
SELECT (SELECT array_agg(row(user_id, first, last, member, value) ORDER BY user_id) FROM ms WHERE segment = 'news')
     = (SELECT array_agg(row(user_id, first, last, member, value) ORDER BY user_id) FROM ms WHERE segment = 'news2')
       AS same_memberships,
       (SELECT array_agg(row(user_id, member, value) ORDER BY event) FROM tg WHERE segment = 'news')
     = (SELECT array_agg(row(user_id, member, value) ORDER BY event) FROM tg WHERE segment = 'news2')
       AS same_toggles;
-- a repeated id in a large batch falls back to the checked insert
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES ('00000000-0000-4000-8000-000000000070', 'jo', 9, 'big', '2021-08-01T00:00:00Z', false),
       ('00000000-0000-4000-8000-000000000060', 'jo', 9, 'big', '2021-08-02T00:00:00Z', true),
       ('00000000-0000-4000-8000-000000000071', 'jo', 9, 'big', '2021-08-03T00:00:00Z', true);
SELECT num(event), remove FROM cdp_traits.segment_events WHERE user_id = 'jo' ORDER BY seq;
SELECT event, member, previous FROM tg WHERE user_id = 'jo';
RESET cdp_traits.max_segment_locks;

-- 8. Profiles equal what the memberships define.
CREATE TEMP TABLE kept AS SELECT * FROM cdp_traits.segment_profiles;
SELECT cdp_traits.rebuild_segment_profiles() AS users;
SELECT count(*) AS differences
  FROM kept k FULL JOIN cdp_traits.segment_profiles p USING (user_id)
 WHERE k.segments IS DISTINCT FROM p.segments;
SELECT user_id, jsonb_array_length(segments) AS segments FROM cdp_traits.segment_profiles ORDER BY 1;
SELECT segments FROM cdp_traits.segment_profiles WHERE user_id IN ('carly', 'dave') ORDER BY user_id;

-- 9. Reading the log: toggles_since(after, max) in order.
SELECT seq, user_id, member FROM cdp_traits.toggles_since(0, 3);
SELECT array_agg(seq ORDER BY seq) = (SELECT array_agg(seq ORDER BY seq) FROM cdp_traits.segment_toggles WHERE seq > 3)
       AS rest_in_order
  FROM cdp_traits.toggles_since(3, 1000);
SELECT count(*) FROM cdp_traits.toggles_since((SELECT max(seq) FROM cdp_traits.segment_toggles), 10);
SELECT count(*) FROM cdp_traits.toggles_since(NULL, 0);
SELECT * FROM cdp_traits.toggles_since(0, -1);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM cdp_traits.toggles_since(0, 1);
ROLLBACK;
-- Starting a new consumer: toggles_position() (every toggle up to it is
-- committed), then the state as the next statement sees it, then
-- toggles_since(position) applied in order keeps that state current.
SELECT cdp_traits.toggles_position() AS pos \gset
SELECT :pos >= (SELECT max(seq) FROM cdp_traits.segment_toggles) AS covers_the_log;
CREATE TEMP TABLE consumer AS
SELECT vendor, segment, user_id, member FROM cdp_traits.segment_memberships;
SELECT ingest(700, 'alice', 32, 'trains', '2021-06-01T00:00:00Z', remove => true) IS NOT NULL AS stored,
       ingest(701, 'bob', 32, 'trains', '2021-06-01T00:00:00Z') IS NOT NULL AS stored,
       ingest(702, 'alice', 32, 'trains', '2021-06-02T00:00:00Z') IS NOT NULL AS stored,
       ingest(703, 'alice', 32, 'trains', '2021-06-03T00:00:00Z', remove => true) IS NOT NULL AS stored;
SELECT user_id, member, num(event) AS event FROM cdp_traits.toggles_since(:pos, 100) ORDER BY seq;
UPDATE consumer c SET member = t.member
  FROM (SELECT DISTINCT ON (vendor, segment, user_id) vendor, segment, user_id, member
          FROM cdp_traits.toggles_since(:pos, 100) ORDER BY vendor, segment, user_id, seq DESC) t
 WHERE (c.vendor, c.segment, c.user_id) = (t.vendor, t.segment, t.user_id);
SELECT count(*) AS consumer_differs FROM consumer c
  JOIN cdp_traits.segment_memberships m USING (vendor, segment, user_id) WHERE c.member <> m.member;
SELECT count(*) AS consumer_misses FROM cdp_traits.segment_memberships m
 WHERE NOT EXISTS (SELECT FROM consumer c WHERE (c.vendor, c.segment, c.user_id) = (m.vendor, m.segment, m.user_id));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT cdp_traits.toggles_position();
ROLLBACK;

-- 10. Validation: every violation is rejected with an error naming the
-- field, and nothing is stored.
SELECT count(*) AS events, (SELECT count(*) FROM cdp_traits.segment_event_ids) AS ids
  FROM cdp_traits.segment_events \gset before_
\set VERBOSITY default
SELECT cdp_traits.ingest_segment_event('[1]');
SELECT cdp_traits.ingest_segment_event(NULL);
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') - 'event');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"event": "not-a-uuid"}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"event": 42}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"event": "{00000000-0000-4000-8000-000000000090}"}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') - 'user');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"user": ""}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"user": 7}');
SELECT cdp_traits.ingest_segment_event(ev(90, repeat('k', 2001), 1, 's', '2021-01-01T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') - 'segment');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": "s"}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"name": "s"}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 0, 's', '2021-01-01T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', -3, 's', '2021-01-01T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"vendor": 1.5, "name": "s"}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"vendor": "1", "name": "s"}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"vendor": 3000000000, "name": "s"}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"vendor": 1}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, '', '2021-01-01T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, repeat('x', 33), '2021-01-01T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"segment": {"vendor": 1, "name": ["s"]}}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') - 'timestamp');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"timestamp": 1609459200}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', 'yesterday'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01 00:00:00+00'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00+0530'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-02-29T00:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T24:00:00Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00.Z'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"remove": false}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"remove": "true"}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"remove": null}');
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z', remove => true, val => 'v'));
SELECT cdp_traits.ingest_segment_event(ev(90, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"value": 3}');
-- in a batch, the error names the event that failed (its id), and none of
-- the batch stays
SELECT count(*) AS before FROM cdp_traits.segment_events \gset
SELECT cdp_traits.ingest_segment_event(d)
  FROM (VALUES (ev(94, 'kim', 1, 's', '2021-01-01T00:00:00Z')), (ev(95, 'kim', 1, 's', '2021-01-01 10:00')),
               (ev(96, 'kim', 1, 's', '2021-01-01T00:00:00Z'))) b(d);
SELECT cdp_traits.ingest_segment_event(d)
  FROM (VALUES (ev(94, 'kim', 1, 's', '2021-01-01T00:00:00Z')), (ev(95, 'kim', 1, 's', '2021-01-01T00:00:00Z') - 'user')) b(d);
SELECT count(*) - :before AS stayed FROM cdp_traits.segment_events;
\set VERBOSITY terse
-- the same rules hold for rows written directly (COPY, INSERT): the whole
-- statement is rejected
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000091', 'kim', 1, 's', '2021-01-01T00:00:00Z'),
       ('00000000-0000-4000-8000-000000000092', 'kim', 1, 's', 'yesterday');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000093', 'kim', 0, 's', '2021-01-01T00:00:00Z');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000093', 'kim', 1, repeat('é', 33), '2021-01-01T00:00:00Z');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000093', '', 1, 's', '2021-01-01T00:00:00Z');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000093', repeat('é', 1001), 1, 's', '2021-01-01T00:00:00Z');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
VALUES ('00000000-0000-4000-8000-000000000093', 'kim', 1, 's', '2021-01-01T00:00:00Z', true, 'v');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES (NULL, 'kim', 1, 's', '2021-01-01T00:00:00Z');
COPY cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove) FROM stdin (FORMAT csv);
00000000-0000-4000-8000-000000000094,kim,1,s,2021-01-01T00:00:00Z,false
00000000-0000-4000-8000-000000000095,kim,1,s,2021-01-01T00:00:00+05,false
\.
COPY cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove) FROM stdin (FORMAT csv);
00000000-0000-4000-8000-000000000096,kim,1,s,2021-01-01T00:00:00Z,false
not-a-uuid,kim,1,s,2021-01-01T00:00:00Z,false
\.
-- 33 characters is too many, 32 multibyte ones are fine
SELECT ingest(97, 'kim', 1, repeat('é', 32), '2021-01-01T00:00:00Z') > 0 AS stored;
-- a user of 2000 bytes is fine (one of 2001 is rejected above, not left to
-- fail in an index with an error that names no field); random, so that the
-- indexes cannot compress it
SELECT ingest(100, (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 62) i) || 'abcdefghijklmnop',
              1, 's', '2021-01-01T00:00:00Z') > 0 AS stored;
SELECT octet_length(user_id) AS user_bytes, member FROM cdp_traits.segment_memberships
 WHERE octet_length(user_id) > 100;
-- unknown keys are ignored (as in the reference schema); a JSON null is
-- not an absent key
SELECT cdp_traits.ingest_segment_event(ev(98, 'kim', 1, 's', '2021-01-01T00:00:00Z')
                                       || '{"_meta": {"uuid": "x"}}') > 0 AS stored;
SELECT cdp_traits.ingest_segment_event(ev(99, 'kim', 1, 's', '2021-01-01T00:00:00Z') || '{"value": null}');
SELECT count(*) - :before_events - 3 AS new_events,
       (SELECT count(*) FROM cdp_traits.segment_event_ids) - :before_ids - 3 AS new_ids
  FROM cdp_traits.segment_events;

-- 11. Events are not updated; deleting old ones (retention) keeps the state.
UPDATE cdp_traits.segment_events SET remove = true WHERE user_id = 'alice';
SELECT count(*) AS memberships FROM cdp_traits.segment_memberships \gset
DELETE FROM cdp_traits.segment_events WHERE user_id IN ('alice', 'bob');
SELECT count(*) = :memberships AS memberships_kept FROM cdp_traits.segment_memberships;
SELECT ingest(1, 'alice', 32, 'trains', '2021-01-16T12:34:56Z') AS still_repeated;

-- 12. Audience traits write their enter/exit into the same log, as vendor 0
-- with the entity id as user; audience_changes shows them.
CREATE TABLE ev (id bigint PRIMARY KEY, source_id text NOT NULL, type text NOT NULL,
                 version text NOT NULL, event_time timestamptz NOT NULL, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
INSERT INTO ev VALUES (1, 'web', 'buy', '1', '2021-01-01', '{"email": "a@x", "amount": 50}'),
                      (2, 'web', 'buy', '1', '2021-01-02', '{"email": "b@x", "amount": 500}');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('revenue', '{"type": "sum", "value": "(payload->>''amount'')::numeric"}'),
  ('vip', '{"type": "audience", "condition": "revenue > 100"}');
SELECT cdp_traits.calculate_attributes();
SELECT t.vendor, t.segment, t.user_id::uuid = m.customer_entity_id AS entity_as_user, t.member,
       t.event IS NULL AS no_event
  FROM cdp_traits.segment_toggles t
  JOIN cdp_traits.matching m ON m.value = 'b@x'
 WHERE t.vendor = 0;
INSERT INTO ev VALUES (3, 'web', 'buy', '1', '2021-01-03', '{"email": "a@x", "amount": 70}');
SELECT cdp_traits.calculate_attributes();
SELECT audience_id, entered FROM cdp_traits.audience_changes ORDER BY seq;
SELECT vendor, segment, member, user_id::uuid IN (SELECT customer_entity_id FROM cdp_traits.matching) AS entity
  FROM cdp_traits.toggles_since((SELECT max(seq) - 2 FROM cdp_traits.segment_toggles), 10)
 WHERE vendor = 0;
SELECT cdp_traits.detach_events();

-- 13. A transaction ingesting many single events holds a bounded number of
-- key locks (they are striped), however many keys it writes.
BEGIN;
SELECT count(ingest(1000 + n, 'many' || n, 1, 'locks', '2021-09-01T00:00:00Z')) AS ingested
  FROM generate_series(1, 1000) n;
SELECT count(*) BETWEEN 2 AND 258 AS bounded FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory';
COMMIT;

-- 14. cdp_traits.rfc3339 holds only the instants it can write: the years
-- 0000 to 9999 in UTC.  An offset, a rounded fraction or a leap second that
-- moves a value past either end is rejected, as is a timestamptz outside
-- them (the cast) and binary input: every stored value reads back.
SELECT '0000-01-01T00:00:00Z'::cdp_traits.rfc3339 AS lowest,
       '9999-12-31T23:59:59.999999Z'::cdp_traits.rfc3339 AS highest,
       '0000-01-01T00:00:00-23:59'::cdp_traits.rfc3339 AS west,
       '9999-12-31T23:59:59+23:59'::cdp_traits.rfc3339 AS east,
       (timestamptz '0001-01-01 00:00:00+00 BC')::cdp_traits.rfc3339 AS year_0;
\set VERBOSITY default
SELECT '9999-12-31T23:59:59-23:59'::cdp_traits.rfc3339;
SELECT '0000-01-01T00:00:00+00:01'::cdp_traits.rfc3339;
SELECT '9999-12-31T23:59:59.9999995Z'::cdp_traits.rfc3339;
SELECT '9999-12-31T23:59:60Z'::cdp_traits.rfc3339;
SELECT cdp_traits.ingest_segment_event(ev(150, 'lee', 1, 's', '9999-12-31T23:59:59-23:59'));
SELECT (timestamptz '0044-03-15 12:00:00+00 BC')::cdp_traits.rfc3339;
SELECT (timestamptz '10000-01-01 00:00:00+00')::cdp_traits.rfc3339;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp")
VALUES ('00000000-0000-4000-8000-000000000151', 'lee', 1, 's', timestamptz '0044-03-15 12:00:00+00 BC');
\set VERBOSITY terse
-- binary input: COPY (FORMAT binary) of a timestamptz into an rfc3339 column
CREATE TEMP TABLE bin_in (t timestamptz);
CREATE TEMP TABLE bin_out (t cdp_traits.rfc3339);
INSERT INTO bin_in VALUES ('2021-05-01 12:00:00.5+00');
DO $$ BEGIN
  EXECUTE format('COPY bin_in TO %L (FORMAT binary)', current_setting('data_directory') || '/cdp_rfc3339.bin');
  EXECUTE format('COPY bin_out FROM %L (FORMAT binary)', current_setting('data_directory') || '/cdp_rfc3339.bin');
END $$;
SELECT t FROM bin_out;
TRUNCATE bin_in;
INSERT INTO bin_in VALUES ('0044-03-15 12:00:00+00 BC');
DO $$ BEGIN
  EXECUTE format('COPY bin_in TO %L (FORMAT binary)', current_setting('data_directory') || '/cdp_rfc3339.bin');
  EXECUTE format('COPY bin_out FROM %L (FORMAT binary)', current_setting('data_directory') || '/cdp_rfc3339.bin');
END $$;
SELECT count(*) AS lee_events FROM cdp_traits.segment_events WHERE user_id = 'lee';
-- every stored instant is written as RFC 3339 and read back as the same
SELECT count(*) AS events, count(*) FILTER (WHERE "timestamp"::text::cdp_traits.rfc3339 = "timestamp") AS read_back
  FROM cdp_traits.segment_events;

-- 15. A repeated id is ignored whatever seq it carries (OVERRIDING SYSTEM
-- VALUE can give it any): its row goes, never an accepted event's.  A row
-- with the id and seq of an accepted event no longer in segment_events is
-- that event loaded again (pg_restore loads segment_event_ids, then
-- segment_events): it stays and is not applied again.
SELECT ingest(2160, 'max', 1, 'ov', '2021-10-01T00:00:00Z') AS s2160,
       ingest(2161, 'max', 1, 'ov', '2021-10-02T00:00:00Z', remove => true) AS s2161 \gset
-- a re-delivery of 2161 with 2160's seq
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (:s2160, '00000000-0000-4000-8000-000000002161', 'max', 1, 'ov', '2021-10-03T00:00:00Z', false);
-- a new event with 2160's seq is accepted (late: its seq is below 2161's,
-- so 2161 stays the last event and decides the status; see 17), then
-- re-delivered with that seq; 2160 and 2161 re-delivered with each other's
-- seqs (the large-batch path)
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (:s2160, '00000000-0000-4000-8000-000000002162', 'max', 1, 'ov', '2021-10-04T00:00:00Z', false);
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (:s2160, '00000000-0000-4000-8000-000000002161', 'max', 1, 'ov', '2021-10-05T00:00:00Z', true);
SET cdp_traits.max_segment_locks = 0;
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (:s2161, '00000000-0000-4000-8000-000000002160', 'max', 1, 'ov', '2021-10-06T00:00:00Z', true),
       (:s2160, '00000000-0000-4000-8000-000000002161', 'max', 1, 'ov', '2021-10-06T00:00:00Z', true);
RESET cdp_traits.max_segment_locks;
SELECT num(event), seq - :s2160 AS seq, "timestamp", remove
  FROM cdp_traits.segment_events WHERE user_id = 'max' ORDER BY seq, 1;
SELECT first, last, member, last_event FROM ms WHERE user_id = 'max';
SELECT event, member, previous FROM tg WHERE user_id = 'max';
-- a second row with an accepted event's id and seq is an error
\set VERBOSITY default
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (:s2161, '00000000-0000-4000-8000-000000002161', 'max', 1, 'ov', '2021-10-02T00:00:00Z', true);
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (1000000, '00000000-0000-4000-8000-000000002163', 'max', 1, 'ov', '2021-10-07T00:00:00Z', false),
       (1000000, '00000000-0000-4000-8000-000000002163', 'max', 1, 'ov', '2021-10-07T00:00:00Z', false);
\set VERBOSITY terse
-- loaded again, after a retention delete, one by one and in one large batch:
-- the rows are back, memberships, profiles and toggles unchanged
CREATE TEMP TABLE max_rows AS SELECT * FROM cdp_traits.segment_events WHERE user_id = 'max';
CREATE TEMP TABLE max_state AS
SELECT (SELECT array_agg(x::text ORDER BY vendor, segment) FROM cdp_traits.segment_memberships x WHERE user_id = 'max') AS m,
       (SELECT segments FROM cdp_traits.segment_profiles WHERE user_id = 'max') AS p,
       (SELECT array_agg(y::text ORDER BY seq) FROM cdp_traits.segment_toggles y) AS t;
DELETE FROM cdp_traits.segment_events WHERE user_id = 'max';
INSERT INTO cdp_traits.segment_events OVERRIDING SYSTEM VALUE SELECT * FROM max_rows ORDER BY seq;
DELETE FROM cdp_traits.segment_events WHERE user_id = 'max';
SET cdp_traits.max_segment_locks = 0;
INSERT INTO cdp_traits.segment_events OVERRIDING SYSTEM VALUE SELECT * FROM max_rows ORDER BY seq;
RESET cdp_traits.max_segment_locks;
SELECT (SELECT array_agg(e::text ORDER BY seq, event) FROM cdp_traits.segment_events e WHERE user_id = 'max')
       = (SELECT array_agg(e::text ORDER BY seq, event) FROM max_rows e) AS events_back,
       (SELECT array_agg(x::text ORDER BY vendor, segment) FROM cdp_traits.segment_memberships x WHERE user_id = 'max') = s.m
         AS same_memberships,
       (SELECT segments FROM cdp_traits.segment_profiles WHERE user_id = 'max') = s.p AS same_profile,
       (SELECT array_agg(y::text ORDER BY seq) FROM cdp_traits.segment_toggles y) = s.t AS same_toggles
  FROM max_state s;
-- every row in segment_events is an accepted event, stored once
SELECT count(*) AS unaccepted FROM cdp_traits.segment_events e
 WHERE NOT EXISTS (SELECT FROM cdp_traits.segment_event_ids i WHERE i.event = e.event AND i.seq = e.seq);
SELECT count(*) AS stored_twice FROM (SELECT FROM cdp_traits.segment_events GROUP BY event, seq HAVING count(*) > 1) d;

-- 16. The segment locks are advisory locks in key spaces of their own
-- (objsubid 17225: the segments lock, objid 0, and the toggle log, objid 1;
-- 17226: the key stripes), which pg_advisory_lock() cannot take (isolation
-- spec segments: holding the old keys blocks nobody).
-- The toggle log lock is held by writers of toggles only: an add that is
-- the key's first (no toggle) leaves it alone, the remove after it takes it.
BEGIN;
SELECT ingest(190, 'nat', 1, 'locks', '2021-11-01T00:00:00Z') > 0 AS stored;
SELECT count(*) AS toggle_log_locks FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 17225 AND objid = 1;
SELECT ingest(191, 'nat', 1, 'locks', '2021-11-02T00:00:00Z', remove => true) > 0 AS stored;
SELECT cdp_traits.rebuild_segment_profiles() > 0 AS rebuilt;
SELECT classid, objid, objsubid, mode FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid <> 17226 ORDER BY objid, mode;
SELECT count(*) AS key_locks FROM pg_locks
 WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 17226 AND mode = 'ExclusiveLock';
COMMIT;

-- 17. Arrival order is seq order.  An event whose seq is below that of its
-- key's last event is late (a concurrent writer took its seq first but
-- locked the key later: isolation spec segments; here the rows carry
-- explicit seqs): it changes neither the status nor the last event and
-- toggles nothing; first and last take it in, and so does the value when no
-- add with a higher seq carried one.
SELECT coalesce(max(seq), 0) + 1000 AS b FROM cdp_traits.segment_events \gset
-- (the sequence past the explicit seqs, as after real arrivals)
SELECT setval(pg_get_serial_sequence('cdp_traits.segment_events', 'seq'), :b + 100) > 0 AS seq_set;
CREATE FUNCTION at_seq(seq bigint, n int, usr text, ts text, remove boolean, val text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove, value)
  OVERRIDING SYSTEM VALUE
  VALUES (seq, ('0000aaaa-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, usr, 1, 'late', ts::timestamptz, remove, val)
$$;
SELECT at_seq(:b + 10, 1701, 'ola', '2021-12-05T00:00:00Z', false, 'A');
SELECT at_seq(:b + 20, 1702, 'ola', '2021-12-06T00:00:00Z', true);
-- late add, earlier in time: first moves, the value is its (seq 15 > 10),
-- the status stays the remove's
SELECT at_seq(:b + 15, 1703, 'ola', '2021-12-01T00:00:00Z', false, 'C');
-- late add before that: the value stays (seq 12 < 15)
SELECT at_seq(:b + 12, 1704, 'ola', '2021-12-09T00:00:00Z', false, 'D');
SELECT first, last, member, value, last_event FROM ms WHERE user_id = 'ola';
SELECT value_seq - :b AS value_seq, last_seq - :b AS last_seq FROM cdp_traits.segment_memberships WHERE user_id = 'ola';
-- the next add in arrival order toggles, after the remove (not the late adds)
SELECT at_seq(:b + 30, 1705, 'ola', '2021-12-07T00:00:00Z', false);
SELECT event, member, previous FROM tg WHERE user_id = 'ola';
SELECT first, last, member, value, last_event FROM ms WHERE user_id = 'ola';
-- within one statement the rows are applied in seq order, whatever the
-- order they are written in (small batch and large): pia is added (the
-- remove comes first, then adds; X has the highest seq), quin's add comes
-- before its remove (a toggle)
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove, value)
OVERRIDING SYSTEM VALUE
VALUES (:b + 50, '0000aaaa-0000-4000-8000-000000001711', 'pia', 1, 'late', '2021-12-01T00:00:00Z', false, 'X'),
       (:b + 40, '0000aaaa-0000-4000-8000-000000001712', 'pia', 1, 'late', '2021-12-02T00:00:00Z', true, NULL),
       (:b + 45, '0000aaaa-0000-4000-8000-000000001713', 'pia', 1, 'late', '2021-12-03T00:00:00Z', false, 'Y');
SET cdp_traits.max_segment_locks = 0;
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove, value)
OVERRIDING SYSTEM VALUE
VALUES (:b + 60, '0000aaaa-0000-4000-8000-000000001721', 'quin', 1, 'late', '2021-12-01T00:00:00Z', true, NULL),
       (:b + 55, '0000aaaa-0000-4000-8000-000000001722', 'quin', 1, 'late', '2021-12-02T00:00:00Z', false, 'Z');
RESET cdp_traits.max_segment_locks;
SELECT user_id, first, last, member, value, last_event FROM ms WHERE user_id IN ('pia', 'quin');
SELECT count(*) AS toggles FROM tg WHERE user_id IN ('pia', 'quin');
-- the profiles agree with the memberships
SELECT user_id, segments FROM cdp_traits.segment_profiles WHERE user_id IN ('ola', 'pia', 'quin') ORDER BY 1;
-- A value of unknown origin (value_seq NULL) counts as older than any
-- event, and stays NULL when no add with a value comes
CREATE VIEW late_ms AS
SELECT member, value, value_seq, last_seq, num(last_event) AS last_event
  FROM cdp_traits.segment_memberships WHERE user_id = 'ola';
UPDATE cdp_traits.segment_memberships SET value_seq = NULL WHERE user_id = 'ola';
SELECT at_seq(:b + 25, 1706, 'ola', '2021-12-08T00:00:00Z', true);
SELECT at_seq(:b + 22, 1707, 'ola', '2021-12-08T00:00:00Z', false);
SELECT member, value, value_seq, last_event FROM late_ms;
SELECT at_seq(:b + 23, 1708, 'ola', '2021-12-08T00:00:00Z', false, 'E');
SELECT member, value, value_seq - :b AS value_seq, last_event FROM late_ms;
-- TRUNCATE ... RESTART IDENTITY starts the sequence again: the stored seqs
-- go back to 0 (value_seq to NULL), as every event to come arrives after
-- them; new events are not late, they toggle and set the value.  A plain
-- TRUNCATE keeps the seqs.
CREATE FUNCTION new_seq(n int, usr text, ts text, remove boolean, val text DEFAULT NULL)
RETURNS bigint LANGUAGE sql AS $$
  INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
  VALUES (('0000aaaa-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, usr, 1, 'late', ts::timestamptz, remove, val)
  RETURNING seq
$$;
SELECT member, value, last_seq > 1000 AS high_seq, last_event FROM late_ms;
TRUNCATE cdp_traits.segment_events;
SELECT member, value, last_seq > 1000 AS high_seq, value_seq > 1000 AS high_value_seq FROM late_ms;
TRUNCATE cdp_traits.segment_events RESTART IDENTITY;
SELECT member, value, last_seq, value_seq FROM late_ms;
SELECT new_seq(1709, 'ola', '2021-12-10T00:00:00Z', true) AS seq;
SELECT new_seq(1710, 'ola', '2021-12-12T00:00:00Z', false, 'G') AS seq;
-- and lateness is back for seqs the sequence gave out: a remove below 1710's
SELECT at_seq(1, 1711, 'ola', '2021-12-11T00:00:00Z', true);
SELECT event, member, previous FROM tg WHERE user_id = 'ola' AND event > 1705;
SELECT * FROM late_ms;

-- 18. What pg_restore loads (a superuser's session named pg_restore, its
-- default application_name) is kept as it is: rows of a dump, whose ids,
-- memberships, profiles and toggles the dump holds too, and which pg_restore
-- -j may load before or after them.  Nothing is applied, no id stored.  A
-- session of any other role under that name is an ordinary writer.
CREATE VIEW restored AS
SELECT (SELECT count(*) FROM cdp_traits.segment_events WHERE segment = 'restored') AS events,
       (SELECT count(*) FROM cdp_traits.segment_event_ids i
         WHERE i.event::text LIKE '0000bbbb-%') AS ids,
       (SELECT count(*) FROM cdp_traits.segment_memberships WHERE segment = 'restored') AS memberships,
       (SELECT count(*) FROM cdp_traits.segment_toggles WHERE segment = 'restored') AS toggles;
SET application_name = 'pg_restore';
INSERT INTO cdp_traits.segment_events (seq, event, user_id, vendor, segment, "timestamp", remove)
OVERRIDING SYSTEM VALUE
VALUES (900001, '0000bbbb-0000-4000-8000-000000000001', 'rex', 1, 'restored', '2022-01-01T00:00:00Z', false),
       (900002, '0000bbbb-0000-4000-8000-000000000002', 'rex', 1, 'restored', '2022-01-02T00:00:00Z', true);
SELECT * FROM restored;
CREATE ROLE seg_restore_admin NOLOGIN IN ROLE cdp_traits_admin;
SET ROLE seg_restore_admin;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES ('0000bbbb-0000-4000-8000-000000000003', 'rex', 1, 'restored', '2022-01-03T00:00:00Z', false);
RESET ROLE;
RESET application_name;
SELECT * FROM restored;
SELECT user_id, member, first, last FROM cdp_traits.segment_memberships WHERE segment = 'restored';
DELETE FROM cdp_traits.segment_events WHERE segment = 'restored';
DROP VIEW restored;
DROP ROLE seg_restore_admin;
