
/*
 * Segments and toggles (SPEC section 6): segmentation events, membership per
 * (vendor, segment, user), profiles per user, and a change log for
 * activation.
 *
 *   segment_events        the events, one column per field, in arrival order
 *                         (seq); only accepted events stay (a repeated event
 *                         id is removed again by the trigger)
 *   segment_event_ids     every event id ever accepted (idempotent delivery)
 *   segment_memberships   per key: first add, last event time, status, value,
 *                         and the key's last event (a toggle's "previous")
 *   segment_profiles      per user: all memberships as a JSON array
 *   segment_toggles       append-only log of status changes, also of audience
 *                         traits (vendor 0); audience_changes is a view on it
 *
 * The statement trigger on segment_events (C, src/segment_trigger.c) does the
 * work for every INSERT or COPY, in the same transaction: it locks the keys,
 * keeps the new event ids, folds each key's new events into its stored
 * membership in arrival order, and writes toggles, memberships and the
 * profiles of the users touched with one statement each.
 */

-- The type of segment_events.timestamp: an instant whose text input is RFC
-- 3339 with an offset and nothing else (an error naming the field), so
-- that COPY is checked like ingest_segment_event().  Stored and compared
-- like timestamptz (binary-compatible, implicit cast); written in UTC.
-- Every way in (text, binary, the cast from timestamptz) accepts only the
-- instants of the years 0000 to 9999 in UTC, which the output can write:
-- whatever is stored reads back (a dump restores).
CREATE TYPE cdp_traits.rfc3339;
CREATE FUNCTION cdp_traits.rfc3339_in(cstring) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_in';
CREATE FUNCTION cdp_traits.rfc3339_out(cdp_traits.rfc3339) RETURNS cstring
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_out';
CREATE FUNCTION cdp_traits.rfc3339_recv(internal) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_recv';
CREATE FUNCTION cdp_traits.rfc3339_send(cdp_traits.rfc3339) RETURNS bytea
LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE
AS 'timestamptz_send';
CREATE TYPE cdp_traits.rfc3339 (
	INPUT = cdp_traits.rfc3339_in,
	OUTPUT = cdp_traits.rfc3339_out,
	RECEIVE = cdp_traits.rfc3339_recv,
	SEND = cdp_traits.rfc3339_send,
	LIKE = pg_catalog.timestamptz,
	CATEGORY = 'D'
);
COMMENT ON TYPE cdp_traits.rfc3339 IS
	'a point in time written as RFC 3339 with an offset (input) and in UTC (output); compares as timestamptz';
CREATE CAST (cdp_traits.rfc3339 AS timestamptz) WITHOUT FUNCTION AS IMPLICIT;
CREATE FUNCTION cdp_traits.rfc3339(timestamptz) RETURNS cdp_traits.rfc3339
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_rfc3339_from_timestamptz';
CREATE CAST (timestamptz AS cdp_traits.rfc3339) WITH FUNCTION cdp_traits.rfc3339(timestamptz) AS ASSIGNMENT;
-- INSERT ... SELECT of text columns: checked by the input function
CREATE CAST (text AS cdp_traits.rfc3339) WITH INOUT AS ASSIGNMENT;

CREATE TABLE cdp_traits.segment_events (
	seq bigint GENERATED ALWAYS AS IDENTITY,	-- arrival order
	event uuid NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	vendor integer NOT NULL,
	segment text COLLATE "C" NOT NULL,	-- segment.name
	"timestamp" cdp_traits.rfc3339 NOT NULL,
	remove boolean NOT NULL DEFAULT false,
	value text,
	CONSTRAINT segment_events_user_not_empty CHECK (user_id <> ''),
	-- (the memberships' and profiles' primary keys hold it: a B-tree entry
	-- may not exceed 2704 bytes)
	CONSTRAINT segment_events_user_length CHECK (pg_catalog.octet_length(user_id) <= 2000),
	CONSTRAINT segment_events_vendor_positive CHECK (vendor >= 1),
	CONSTRAINT segment_events_segment_length CHECK (pg_catalog.char_length(segment) BETWEEN 1 AND 32),
	CONSTRAINT segment_events_value_only_on_adds CHECK (value IS NULL OR NOT remove)
);
-- An append-only log in seq order: a BRIN index finds rows by seq at almost no
-- cost per insert (a B-tree would cost as much as the rest of a COPY).
CREATE INDEX segment_events_seq ON cdp_traits.segment_events USING brin (seq)
	WITH (autosummarize = on);
COMMENT ON TABLE cdp_traits.segment_events IS
	'segmentation events (SPEC section 6) in arrival order (seq); insert or COPY into it, or call ingest_segment_event()';
COMMENT ON COLUMN cdp_traits.segment_events.segment IS 'segment.name of the event';
COMMENT ON COLUMN cdp_traits.segment_events."timestamp" IS 'the event''s time (RFC 3339 with an offset when written; an instant)';

CREATE TABLE cdp_traits.segment_event_ids (
	event uuid PRIMARY KEY,
	seq bigint NOT NULL				-- the accepted event's segment_events.seq
);
COMMENT ON TABLE cdp_traits.segment_event_ids IS
	'every segmentation event id accepted so far: a repeated id is ignored';

CREATE TABLE cdp_traits.segment_memberships (
	vendor integer NOT NULL,
	segment text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	first timestamptz,				-- earliest add (NULL: never added)
	last timestamptz NOT NULL,		-- latest event time
	member boolean NOT NULL,		-- status of the last event in arrival order
	value text,						-- value of the last add that carried one
	value_seq bigint,				-- ... that add's segment_events.seq
	last_event uuid NOT NULL,		-- the last event in arrival order ...
	last_event_time timestamptz NOT NULL,	-- ... its time
	last_seq bigint NOT NULL,		-- ... and its segment_events.seq
	PRIMARY KEY (vendor, segment, user_id)
) WITH (fillfactor = 80);		-- room for HOT updates: rows change, keys never do
COMMENT ON TABLE cdp_traits.segment_memberships IS
	'status of every (vendor, segment, user) that has events';

CREATE TABLE cdp_traits.segment_profiles (
	user_id text COLLATE "C" PRIMARY KEY,
	segments jsonb NOT NULL
);
COMMENT ON TABLE cdp_traits.segment_profiles IS
	'per user, the details of all its memberships as a JSON array sorted by (name, vendor)';
-- Profiles are rewritten whole; lz4 compresses them several times faster than pglz.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_settings
				WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE cdp_traits.segment_profiles ALTER COLUMN segments SET COMPRESSION lz4;
	END IF;
END;
$$;

CREATE TABLE cdp_traits.segment_toggles (
	seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	vendor integer NOT NULL,		-- 0: an audience trait (attribute engine)
	segment text COLLATE "C" NOT NULL,	-- segment name; audiences: the attribute id
	user_id text COLLATE "C" NOT NULL,	-- audiences: the customer entity id
	member boolean NOT NULL,		-- status after the change (true: added, entered)
	event uuid,						-- the event that changed it (NULL for audiences)
	event_time timestamptz NOT NULL,	-- its time (audiences: of the calculation)
	value text,						-- the value the add carried
	previous_event uuid,			-- the key's last event before it
	previous_time timestamptz,		-- and its time
	recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE cdp_traits.segment_toggles IS
	'append-only log of membership changes (member <-> non-member) of segments and audiences (vendor 0); read it with toggles_since()';

/*
 * The segment locks are advisory locks in key spaces of their own (objsubid
 * 17225 and 17226 in pg_locks, see src/segment_trigger.c), out of reach of
 * pg_advisory_lock(): no role can stall segment writers or toggle readers
 * from SQL.  The SQL functions below take them through these C functions.
 */
-- the segments lock, exclusively, until the end of the transaction
CREATE FUNCTION cdp_traits._segments_lock_exclusive() RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_segments_lock_exclusive';
-- a stored profile with the changed entries of a writer merged in (the
-- trigger's profile writes, under the row lock: see src/segment_trigger.c)
CREATE FUNCTION cdp_traits._profile_merge(user_id text, stored jsonb, changes jsonb) RETURNS jsonb
LANGUAGE c IMMUTABLE STRICT
AS 'MODULE_PATHNAME', 'cdp_profile_merge';
-- wait for the transactions writing toggles at this moment (holds nothing)
CREATE FUNCTION cdp_traits._toggles_wait() RETURNS void
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'cdp_toggles_wait';

-- The profiles as the memberships define them (the trigger keeps them so).
-- SECURITY DEFINER: the profiles are written by the extension owner only (the
-- trigger runs as the owner too), and admins, who may only read them, rebuild
-- them; it runs no SQL of theirs (fixed statements, every name qualified).
CREATE FUNCTION cdp_traits.rebuild_segment_profiles() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- the segments lock, exclusively: no segment events are written meanwhile
	PERFORM cdp_traits._segments_lock_exclusive();
	DELETE FROM cdp_traits.segment_profiles;
	INSERT INTO cdp_traits.segment_profiles (user_id, segments)
	SELECT m.user_id,
		   jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
			   'segment', jsonb_build_object('vendor', m.vendor, 'name', m.segment),
			   'first', m.first::cdp_traits.rfc3339, 'last', m.last::cdp_traits.rfc3339,
			   'member', m.member, 'value', m.value))
			   ORDER BY m.segment, m.vendor)
	  FROM cdp_traits.segment_memberships m
	 GROUP BY m.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION cdp_traits.rebuild_segment_profiles() IS
	'rebuild every profile from the memberships (the trigger keeps them current; this repairs them); returns the number of users';

/*
 * Erase a user of the segment events (a data subject's request to be
 * forgotten): their events, memberships, profile and toggles, of every
 * vendor (audience toggles, vendor 0, are entities' and stay: see
 * erase_entity).  Under the segments lock, exclusively: writers in progress
 * commit first, and new ones wait.  The ids of the erased events stay in
 * segment_event_ids, so a redelivered event is still ignored.  Owner only;
 * runs as its caller.  One row per table touched.
 */
CREATE FUNCTION cdp_traits.erase_segment_user(user_id text) RETURNS TABLE(what text, removed bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF erase_segment_user.user_id IS NULL THEN
		RAISE EXCEPTION 'user id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp_traits._segments_lock_exclusive();
	DELETE FROM cdp_traits.segment_events e WHERE e.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_events'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_memberships m WHERE m.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_memberships'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_profiles p WHERE p.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_profiles'; removed := n; RETURN NEXT;
	DELETE FROM cdp_traits.segment_toggles t WHERE t.vendor <> 0 AND t.user_id = erase_segment_user.user_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	what := 'segment_toggles'; removed := n; RETURN NEXT;
END;
$$;
COMMENT ON FUNCTION cdp_traits.erase_segment_user(text) IS
	'erase a user of the segment events: their events, memberships, profile and toggles; one row per table touched';

-- Audience enter/exit (SPEC section 4) are toggles of vendor 0.
CREATE VIEW cdp_traits.audience_changes AS
SELECT t.seq, t.segment::text AS audience_id,
	   CASE WHEN t.vendor = 0 THEN t.user_id::uuid END AS customer_entity_id,
	   t.member AS entered, t.recorded_at AS changed_at
  FROM cdp_traits.segment_toggles t
 WHERE t.vendor = 0;
COMMENT ON VIEW cdp_traits.audience_changes IS
	'audience membership changes (enter = true, exit = false), in order: the audience toggles';

/*
 * The toggle log is read by sequence number, so a reader must not pass a
 * number that a transaction still in progress holds: writers hold the log
 * lock shared from their first toggle to commit, and toggles_since() waits
 * for the writers of the moment before reading up to the last number given
 * out before it waited.
 */
CREATE FUNCTION cdp_traits._toggles_writer() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_toggles_writer';
CREATE TRIGGER toggles_writer BEFORE INSERT ON cdp_traits.segment_toggles
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._toggles_writer();

-- Consumers that listen are told the last sequence number at commit.
CREATE FUNCTION cdp_traits._toggles_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	last bigint;
BEGIN
	SELECT max(n.seq) INTO last FROM cdp_new_toggles n;
	IF last IS NOT NULL THEN
		PERFORM pg_catalog.pg_notify('cdp_traits_toggles', last::text);
	END IF;
	RETURN NULL;
END;
$$;
CREATE TRIGGER toggles_notify AFTER INSERT ON cdp_traits.segment_toggles
	REFERENCING NEW TABLE AS cdp_new_toggles
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._toggles_notify();
-- (enabled always, also in replica sessions: see 95_replica_sessions.sql)

-- The number up to which every toggle has been committed or rolled back:
-- the last number given out, read before waiting for the writers of that
-- moment (taken and released at once).  A standby knows neither the
-- primary's writers of the moment (their locks are not replicated, and a
-- writer that took its number may not have written anything yet) nor the
-- last number given out (a sequence is logged ahead): a reader there would
-- pass over a toggle committed later.  Called by toggles_since() and
-- toggles_position() (caller: the name given in errors).
CREATE FUNCTION cdp_traits._toggles_upto(caller text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	given_out bigint;
BEGIN
	IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION '%() must run in a READ COMMITTED transaction', caller
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'A snapshot taken earlier in the transaction could miss toggles committed since, and the reader would skip them.';
	END IF;
	IF pg_catalog.pg_is_in_recovery() THEN
		RAISE EXCEPTION '%() cannot run on a standby', caller
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'A standby cannot see which transactions on the primary are still writing toggles, so a toggle with a lower seq could commit after the reader passed it.',
				  HINT = pg_catalog.format('Call %s() on the primary.', caller);
	END IF;
	SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO given_out
	  FROM cdp_traits.segment_toggles_seq_seq s;
	PERFORM cdp_traits._toggles_wait();
	RETURN given_out;
END;
$$;

CREATE FUNCTION cdp_traits.toggles_since("after" bigint, max integer)
RETURNS SETOF cdp_traits.segment_toggles
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
-- the cached plan must stay a range read of the primary key however the log grows
SET enable_seqscan = off
AS $$
DECLARE
	given_out bigint;
BEGIN
	IF max IS NULL OR max < 0 THEN
		RAISE EXCEPTION 'max must be 0 or more'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	given_out := cdp_traits._toggles_upto('toggles_since');
	RETURN QUERY
	SELECT t.* FROM cdp_traits.segment_toggles t
	 WHERE t.seq > COALESCE("after", 0) AND t.seq <= given_out
	 ORDER BY t.seq
	 LIMIT max;
END;
$$;
COMMENT ON FUNCTION cdp_traits.toggles_since(bigint, integer) IS
	'toggles with seq > after, in order, at most max; never skips a toggle of a transaction still in progress (waits for it)';

-- Where a new consumer starts: every toggle up to the number returned is
-- committed (or rolled back), so a snapshot taken after it (the next
-- statement of a READ COMMITTED session) holds the state they made, and
-- toggles_since(that number) hands out every change after it (README,
-- "Starting a consumer").
CREATE FUNCTION cdp_traits.toggles_position() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
	SELECT cdp_traits._toggles_upto('toggles_position')
$$;
COMMENT ON FUNCTION cdp_traits.toggles_position() IS
	'the seq up to which every toggle is committed or rolled back (waits for writers in progress): where a new consumer of toggles_since() starts';

/*
 * ingest_segment_event: validate one JSON event and insert it.  Returns its
 * seq, or NULL when its id was seen before (ignored).
 */
CREATE FUNCTION cdp_traits._segment_event_error(field text, must text, got jsonb DEFAULT NULL,
												 ev text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	shape CONSTANT text := 'A segment event is {"event": uuid, "user": string, "segment": {"vendor": integer, '
						   '"name": string}, "timestamp": RFC 3339} with "remove": true or a string "value".';
BEGIN
	-- (the event's id, once it is known to be one, names the document that
	-- failed among the many of a batch: SELECT ingest_segment_event(doc) FROM ...)
	IF got IS NULL AND ev IS NULL THEN
		RAISE EXCEPTION 'invalid segment event: "%" %', field, must
			USING ERRCODE = 'invalid_parameter_value', HINT = shape;
	ELSIF got IS NULL THEN
		RAISE EXCEPTION 'invalid segment event: "%" %', field, must
			USING ERRCODE = 'invalid_parameter_value', DETAIL = 'The event is ' || ev || '.', HINT = shape;
	END IF;
	RAISE EXCEPTION 'invalid segment event: "%" %', field, must
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = 'The value is ' || got::text || '.' || COALESCE(' The event is ' || ev || '.', '');
END;
$$;

CREATE FUNCTION cdp_traits.ingest_segment_event(doc jsonb) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	seg jsonb;
	v jsonb;
	vendor numeric;
	name text;
	is_remove boolean := false;
	new_seq bigint;
	new_tid tid;
	ev text;				-- the event's id, once checked
	stamp cdp_traits.rfc3339;
	msg text;
	det text;
	hint text;
BEGIN
	IF doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN
		RAISE EXCEPTION 'invalid segment event: it must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The value is ' || COALESCE(doc::text, 'NULL') || '.';
	END IF;

	v := doc->'event';
	IF v IS NULL THEN
		PERFORM _segment_event_error('event', 'is missing');
	ELSIF jsonb_typeof(v) <> 'string'
		  OR (v->>0) !~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
		PERFORM _segment_event_error('event', 'must be a UUID string', v);
	END IF;
	ev := v->>0;

	v := doc->'user';
	IF v IS NULL THEN
		PERFORM _segment_event_error('user', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' OR v->>0 = '' THEN
		PERFORM _segment_event_error('user', 'must be a non-empty string', v, ev);
	ELSIF pg_catalog.octet_length(v->>0) > 2000 THEN
		PERFORM _segment_event_error('user', pg_catalog.format('must be at most 2000 bytes long (it has %s)',
																pg_catalog.octet_length(v->>0)), NULL, ev);
	END IF;

	seg := doc->'segment';
	IF seg IS NULL THEN
		PERFORM _segment_event_error('segment', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(seg) <> 'object' THEN
		PERFORM _segment_event_error('segment', 'must be an object with "vendor" and "name"', seg, ev);
	END IF;
	v := seg->'vendor';
	IF v IS NULL THEN
		PERFORM _segment_event_error('segment.vendor', 'is missing', NULL, ev);
	END IF;
	IF jsonb_typeof(v) = 'number' THEN
		vendor := (v #>> '{}')::numeric;
	END IF;
	IF vendor IS NULL OR vendor <> trunc(vendor) OR vendor < 1 OR vendor > 2147483647 THEN
		PERFORM _segment_event_error('segment.vendor', 'must be an integer from 1 to 2147483647', v, ev);
	END IF;
	v := seg->'name';
	IF v IS NULL THEN
		PERFORM _segment_event_error('segment.name', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' THEN
		PERFORM _segment_event_error('segment.name', 'must be a string of 1 to 32 characters', v, ev);
	END IF;
	name := v->>0;
	IF char_length(name) NOT BETWEEN 1 AND 32 THEN
		PERFORM _segment_event_error('segment.name', 'must be a string of 1 to 32 characters', v, ev);
	END IF;

	v := doc->'timestamp';
	IF v IS NULL THEN
		PERFORM _segment_event_error('timestamp', 'is missing', NULL, ev);
	ELSIF jsonb_typeof(v) <> 'string' THEN
		PERFORM _segment_event_error('timestamp', 'must be an RFC 3339 date-time with an offset', v, ev);
	END IF;
	-- the format itself is checked by the column's type, cdp_traits.rfc3339;
	-- its error is given again with the event's id (no subtransaction id is
	-- taken: the block writes nothing)
	BEGIN
		stamp := (v->>0)::cdp_traits.rfc3339;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
		det := CASE WHEN det <> '' THEN det || ' ' ELSE 'The value is ' || v::text || '. ' END
			   || 'The event is ' || ev || '.';
		IF hint <> '' THEN
			RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = msg, DETAIL = det, HINT = hint;
		END IF;
		RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = msg, DETAIL = det;
	END;

	v := doc->'remove';
	IF v IS NOT NULL THEN
		IF v <> 'true'::jsonb THEN
			PERFORM _segment_event_error('remove', 'must be true when present (leave it out for an add)', v, ev);
		END IF;
		is_remove := true;
	END IF;

	v := doc->'value';
	IF v IS NOT NULL THEN
		IF is_remove THEN
			PERFORM _segment_event_error('value', 'is only allowed on adds, not with "remove"', v, ev);
		ELSIF jsonb_typeof(v) <> 'string' THEN
			PERFORM _segment_event_error('value', 'must be a string', v, ev);
		END IF;
	END IF;

	INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
	VALUES ((doc->>'event')::uuid, doc->>'user', vendor::integer, name, stamp,
			is_remove, doc->>'value')
	RETURNING seq, ctid INTO new_seq, new_tid;
	-- a repeated id: the trigger has removed the row again (found by its
	-- tid, which nothing can reuse before this transaction ends)
	IF NOT EXISTS (SELECT FROM cdp_traits.segment_events e WHERE e.ctid = new_tid) THEN
		RETURN NULL;
	END IF;
	RETURN new_seq;
END;
$$;
COMMENT ON FUNCTION cdp_traits.ingest_segment_event(jsonb) IS
	'validate a segmentation event (JSON) and insert it; returns its seq, NULL if its id was seen before';

-- The statement triggers on segment_events.
CREATE FUNCTION cdp_traits._segment_events_insert() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_segment_events_insert';
CREATE TRIGGER segment_events_insert AFTER INSERT ON cdp_traits.segment_events
	REFERENCING NEW TABLE AS cdp_new_segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_insert();

CREATE FUNCTION cdp_traits._segment_events_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'segmentation events cannot be updated'
		USING ERRCODE = 'feature_not_supported',
			  DETAIL = 'Memberships, profiles and toggles were computed from the events as they arrived.',
			  HINT = 'Send a new event instead; delete old events to trim the log (the state is kept).';
END;
$$;
CREATE TRIGGER segment_events_immutable BEFORE UPDATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_immutable();

-- Arrival order is seq order: the trigger takes an event whose seq is below
-- its key's last_seq for a late one.  TRUNCATE ... RESTART IDENTITY starts
-- the sequence again, and every event to come arrives after the stored
-- ones: their seqs above the sequence's last value go back to 0 (value_seq
-- to NULL, older than any event).  A plain TRUNCATE leaves the sequence,
-- and so the seqs, as they are.
CREATE FUNCTION cdp_traits._segment_events_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, cdp_traits, pg_temp
AS $$
DECLARE
	-- (NULL: nothing given out since the restart)
	given CONSTANT bigint := COALESCE(pg_catalog.pg_sequence_last_value(
		pg_catalog.pg_get_serial_sequence('cdp_traits.segment_events', 'seq')::pg_catalog.regclass), 0);
BEGIN
	-- (one pass; value_seq <= last_seq, so only rows with last_seq > given)
	UPDATE cdp_traits.segment_memberships m
	   SET last_seq = 0, value_seq = CASE WHEN m.value_seq <= given THEN m.value_seq END
	 WHERE m.last_seq > given;
	RETURN NULL;
END;
$$;
CREATE TRIGGER segment_events_truncated AFTER TRUNCATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_truncated();

-- Events that arrive by logical replication.  The apply worker runs as a
-- replica session, where ordinary triggers do not fire, and fires row
-- triggers only.  Triggers enabled for replica sessions only: a row trigger
-- that applies each replicated event as an INSERT of that one row would be
-- (the statement trigger and it each act only in their kind of session, so
-- ENABLE ALWAYS does not apply an event twice), and the UPDATE and TRUNCATE
-- triggers above again.
CREATE FUNCTION cdp_traits._segment_event_row() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'cdp_segment_event_row';
CREATE TRIGGER segment_events_replica AFTER INSERT ON cdp_traits.segment_events
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._segment_event_row();
CREATE TRIGGER segment_events_replica_update BEFORE UPDATE ON cdp_traits.segment_events
	FOR EACH ROW EXECUTE FUNCTION cdp_traits._segment_events_immutable();
CREATE TRIGGER segment_events_replica_truncate AFTER TRUNCATE ON cdp_traits.segment_events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits._segment_events_truncated();
ALTER TABLE cdp_traits.segment_events
	ENABLE REPLICA TRIGGER segment_events_replica,
	ENABLE REPLICA TRIGGER segment_events_replica_update,
	ENABLE REPLICA TRIGGER segment_events_replica_truncate;
