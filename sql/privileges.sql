-- Least privilege: every object of the schema is classified (src/sql/90_privileges.sql),
-- the roles cdp_traits_admin and cdp_traits_reader can do their jobs, a role that may
-- only insert events can do nothing else, and a search_path hijack does not take over
-- stitching.
DROP EXTENSION IF EXISTS cdp_traits;
CREATE EXTENSION cdp_traits;
SET client_min_messages = warning;

-- Every relation and function of the schema has been classified: nothing keeps
-- PostgreSQL's default privileges (a NULL ACL).  An object added without an entry
-- in 90_privileges.sql shows up here.
SELECT 'relation' AS kind, c.relname AS unclassified FROM pg_class c
 WHERE c.relnamespace = 'cdp_traits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND c.relacl IS NULL
UNION ALL
SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
 WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.proacl IS NULL
ORDER BY 1, 2;

-- Nothing on a relation for PUBLIC; only these roles hold anything.
SELECT c.relname, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'cdp_traits'::regnamespace AND a.grantee = 0;
SELECT DISTINCT a.grantee::regrole
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'cdp_traits'::regnamespace AND a.grantee <> c.relowner
 ORDER BY 1;

-- The relation matrix: what the reader and the admin may do.
CREATE FUNCTION pg_temp.privs(r name, rel oid) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(p, ',' ORDER BY o), '-')
    FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'USAGE'])
         WITH ORDINALITY AS t(p, o)
   WHERE CASE WHEN (SELECT relkind FROM pg_class WHERE oid = rel) = 'S'
              THEN p IN ('SELECT', 'UPDATE', 'USAGE') AND has_sequence_privilege(r, rel, p)
              ELSE p <> 'USAGE' AND has_table_privilege(r, rel, p) END
$$;
SELECT c.relname, c.relkind,
       pg_temp.privs('cdp_traits_reader', c.oid) AS reader,
       pg_temp.privs('cdp_traits_admin', c.oid) AS admin
  FROM pg_class c
 WHERE c.relnamespace = 'cdp_traits'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
 ORDER BY c.relkind, c.relname;
-- the calculation marks entities calculated: that column only
SELECT has_column_privilege('cdp_traits_admin', 'cdp_traits.customer_entities', 'calculated', 'UPDATE') AS admin_calculated,
       has_column_privilege('cdp_traits_admin', 'cdp_traits.customer_entities', 'id', 'UPDATE') AS admin_id;

-- The function matrix, by who may execute (public = everyone).
SELECT CASE WHEN has_function_privilege('public', p.oid, 'EXECUTE') THEN 'public'
            WHEN has_function_privilege('cdp_traits_reader', p.oid, 'EXECUTE') THEN 'reader'
            WHEN has_function_privilege('cdp_traits_admin', p.oid, 'EXECUTE') THEN 'admin'
            ELSE 'owner' END AS who,
       string_agg(DISTINCT p.proname, ' ' ORDER BY p.proname) AS functions
  FROM pg_proc p
 WHERE p.pronamespace = 'cdp_traits'::regnamespace
 GROUP BY 1 ORDER BY 1;

-- Every SQL and PL/pgSQL function pins search_path; the SECURITY DEFINER
-- functions run no SQL of their callers' (_rebuild_pivot rebuilds the pivot view
-- from checked definitions, rebuild_segment_profiles the profiles from the
-- memberships, _schema_renamed is an event trigger) and PUBLIC may not call them.
SELECT p.proname AS unpinned FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'cdp_traits'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
SELECT p.proname AS security_definer, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.prosecdef
 ORDER BY 1;

-- The roles: admin is a member of reader, neither can log in.
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname LIKE 'cdp\_traits\_%' ORDER BY 1;
SELECT pg_has_role('cdp_traits_admin', 'cdp_traits_reader', 'MEMBER') AS admin_reads;

-- A working setup: events in shop.events, an ingest role that may only insert
-- them, an admin and a reader.
CREATE SCHEMA shop;
CREATE TABLE shop.events (id bigint PRIMARY KEY, source_id text, type text, version text,
                          event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('shop.events');
CREATE ROLE ingest LOGIN;
GRANT USAGE, CREATE ON SCHEMA shop TO ingest;
GRANT INSERT ON shop.events TO ingest;
CREATE ROLE cdp_admin LOGIN IN ROLE cdp_traits_admin;
CREATE ROLE cdp_reader LOGIN IN ROLE cdp_traits_reader;
-- where a hijacker records that its code ran
CREATE TABLE shop.pwned (who name, what text);
GRANT INSERT, SELECT ON shop.pwned TO PUBLIC;

-- The admin configures and calculates.
SET ROLE cdp_admin;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$lower(payload->>'email')$$);
INSERT INTO cdp_traits.stitching_blocklist VALUES ('email', 'test@example.com');
INSERT INTO cdp_traits.attributes VALUES
  ('visits', '{"type": "num_of_unique", "value": "id"}'),
  ('top_page', '{"type": "most_frequent", "value": "payload->>''page''"}');
INSERT INTO cdp_traits.context (key, query) VALUES ('events', 'SELECT count(*) FROM cdp_traits.customer_events');
RESET ROLE;

-- The ingest role writes events; they are stitched (the trigger runs as the owner).
SET ROLE ingest;
INSERT INTO shop.events VALUES
  (1, 'web', 'view', '1', '2024-01-01', '{"email": "A@x.org", "page": "home"}'),
  (2, 'web', 'view', '1', '2024-01-02', '{"email": "a@X.org", "page": "cart"}'),
  (3, 'app', 'view', '1', '2024-01-03', '{"email": "b@x.org", "page": "home"}');
RESET ROLE;
SELECT count(DISTINCT customer_entity_id) AS entities FROM cdp_traits.customer_events;

SET ROLE cdp_admin;
SELECT cdp_traits.refresh_context();
SELECT cdp_traits.calculate_attributes();
SELECT cdp_traits.restitch();
SELECT cdp_traits.run_jobs();
SELECT job, status FROM cdp_traits.job_runs ORDER BY id;
-- a run over a few entities reads the events table itself: attach_events
-- let admins read it (and its schema)
RESET ROLE;
SELECT has_schema_privilege('cdp_traits_admin', 'shop', 'USAGE') AS admin_schema,
       has_table_privilege('cdp_traits_admin', 'shop.events', 'SELECT') AS admin_events,
       has_table_privilege('cdp_traits_admin', 'shop.events', 'INSERT') AS admin_inserts;
SET ROLE ingest;
INSERT INTO shop.events VALUES (20, 'web', 'view', '1', '2024-01-02', '{"email": "a@x.org", "page": "faq"}');
SET ROLE cdp_admin;
SELECT cdp_traits.calculate_attributes();
SELECT scope, count(*) FILTER (WHERE error IS NOT NULL) AS failed FROM cdp_traits.calculation_run_attributes
 WHERE run_id = (SELECT max(id) FROM cdp_traits.calculation_runs) GROUP BY 1;
-- changing a definition's type makes the pivot view be recreated (as the owner)
UPDATE cdp_traits.attributes SET definition = '{"type": "num_of_unique", "value": "payload->>''page''"}'
 WHERE id = 'top_page';
SELECT cdp_traits.calculate_attributes();
RESET ROLE;
SELECT pg_get_userbyid(relowner) = current_user AS pivot_owned_by_owner,
       pg_temp.privs('cdp_traits_reader', oid) AS reader
  FROM pg_class WHERE oid = 'cdp_traits.pivoted_customer_attributes'::regclass;

-- The reader reads results, and nothing more.
SET ROLE cdp_reader;
SELECT visits, top_page FROM cdp_traits.pivoted_customer_attributes ORDER BY visits;
SELECT count(*) FROM cdp_traits.customer_attributes;
SELECT count(*) FROM cdp_traits.customer_events;
SELECT cdp_traits.context_value('events');
SELECT count(*) AS problems FROM cdp_traits.verify_stitching();
SELECT cdp_traits.current_entity(customer_entity_id) IS NOT NULL AS current
  FROM cdp_traits.matching WHERE value = 'b@x.org';
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('x', 'id::text');
UPDATE cdp_traits.attributes SET definition = definition;
SELECT cdp_traits.calculate_attributes();
DELETE FROM cdp_traits.matching;
RESET ROLE;

-- Segments: the admin writes events (the trigger folds them in as the owner)
-- and rebuilds the profiles, a table it may only read: rebuild_segment_profiles()
-- writes them as the owner.
SET ROLE cdp_admin;
SELECT cdp_traits.ingest_segment_event('{"event": "00000000-0000-4000-8000-000000000001", "user": "u1",
  "segment": {"vendor": 1, "name": "s"}, "timestamp": "2024-01-01T00:00:00Z"}') AS seq;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES ('00000000-0000-4000-8000-000000000002', 'u1', 1, 's', '2024-01-02T00:00:00Z', true),
       ('00000000-0000-4000-8000-000000000003', 'u2', 1, 's', '2024-01-03T00:00:00Z', false);
RESET ROLE;
-- a profile lost: the admin's rebuild brings it back
DELETE FROM cdp_traits.segment_profiles WHERE user_id = 'u2';
SET ROLE cdp_admin;
SELECT cdp_traits.rebuild_segment_profiles() AS users;
SELECT user_id, segments FROM cdp_traits.segment_profiles ORDER BY 1;
DELETE FROM cdp_traits.segment_profiles;
-- The toggle log is append-only: the admin's calculation appends an audience's
-- enter/exit (and deleting the audience its exits), but the admin can neither
-- change nor delete a toggle.
INSERT INTO cdp_traits.attributes VALUES ('seen', '{"type": "audience", "condition": "visits > 0"}');
SELECT cdp_traits.calculate_attributes();
DELETE FROM cdp_traits.attributes WHERE id = 'seen';
SELECT vendor, segment, member, count(*) FROM cdp_traits.segment_toggles GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
UPDATE cdp_traits.segment_toggles SET member = NOT member;
DELETE FROM cdp_traits.segment_toggles;
TRUNCATE cdp_traits.segment_toggles;
SELECT count(*) AS toggles FROM cdp_traits.segment_toggles;
RESET ROLE;

-- The ingest role: cannot change rules, blocklist, definitions or context ...
SET ROLE ingest;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('evil', $$(SELECT 'x' FROM shop.pwned)$$);
DELETE FROM cdp_traits.stitching_blocklist;
INSERT INTO cdp_traits.attributes VALUES ('evil', '{"type": "custom", "query": "SELECT 1 AS value"}');
UPDATE cdp_traits.context SET query = 'SELECT 1';
-- ... cannot read results ...
SELECT count(*) FROM cdp_traits.matching;
SELECT count(*) FROM cdp_traits.customer_events;
SELECT count(*) FROM cdp_traits.pivoted_customer_attributes;
SELECT count(*) FROM cdp_traits.customer_attributes;
SELECT count(*) FROM cdp_traits.entity_attributes;
SELECT count(*) FROM cdp_traits.context;
SELECT cdp_traits.context_value('events');
SELECT cdp_traits.current_entity('00000000-0000-0000-0000-000000000000');
-- ... cannot run calculations, jobs or stitching, nor reach the internals ...
SELECT cdp_traits.calculate_attributes();
SELECT cdp_traits.run_jobs();
SELECT cdp_traits.refresh_context();
SELECT cdp_traits.restitch();
SELECT cdp_traits.attach_events('shop.pwned');
SELECT cdp_traits._grant('cdp_traits.matching', 'config');
SELECT cdp_traits._rebuild_pivot();
SELECT cdp_traits._query_columns('SELECT 1');
-- ... nor put a trigger of its own on the extension's tables
CREATE FUNCTION shop.evil_trigger() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, 'trigger'); RETURN NULL; END $$;
CREATE TRIGGER evil AFTER INSERT ON cdp_traits.matching EXECUTE FUNCTION shop.evil_trigger();

-- search_path hijack: a lower() (and a btrim(), and an operator ->>) of the ingest role's
-- own, in a schema before pg_catalog on its search_path, are not picked up by the
-- rule lower(payload->>'email') the trigger evaluates, nor by the extension's statements.
CREATE FUNCTION shop.lower(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, 'lower'); RETURN 'hijacked'; END $$;
CREATE FUNCTION shop.btrim(text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, 'btrim'); RETURN 'hijacked'; END $$;
CREATE FUNCTION shop.arrow(jsonb, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, '->>'); RETURN 'hijacked'; END $$;
CREATE OPERATOR shop.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = shop.arrow);
SET search_path = shop, pg_catalog;
SELECT lower('X') AS own_lower_works_for_itself;
INSERT INTO shop.events VALUES
  (4, 'web', 'view', '1', '2024-01-04', '{"email": "B@X.ORG", "page": "home"}'),
  (5, 'web', 'view', '1', '2024-01-05', '{"email": "Evil@x.org"}');
RESET search_path;
RESET ROLE;
-- only the ingest role's own call above ran its lower(); nothing else did
SELECT who, what, count(*) FROM shop.pwned GROUP BY 1, 2 ORDER BY 1, 2;
-- events 3 and 4 share b@x.org (pg_catalog.lower), 5 has its own identifier
SELECT attribute_id, value FROM cdp_traits.matching ORDER BY 1, 2;
SELECT count(DISTINCT customer_entity_id) FILTER (WHERE id IN (3, 4)) AS entities_of_3_and_4
  FROM cdp_traits.customer_events;
SELECT count(*) AS problems FROM cdp_traits.verify_stitching();
SELECT tgname FROM pg_trigger WHERE tgrelid = 'cdp_traits.matching'::regclass;

-- The worker's jobs run the admin's definitions, never the ingest role's: it
-- could not write any (above), and calculation with the hijacking functions on a
-- search_path does not call them either.
SET search_path = shop, pg_catalog, cdp_traits;
SELECT cdp_traits.run_jobs();
RESET search_path;
SELECT who, what, count(*) FROM shop.pwned GROUP BY 1, 2 ORDER BY 1, 2;

-- An events table owned by a role that may not act as the extension owner
-- (the ingest role): the owner of a table can make any query of it run a
-- function of its own as whoever runs the query (an index predicate that
-- the planner folds, a rule that turns it into a view), and stitching, the
-- worker, admins and readers all query the events table.  Such a role may
-- not be given the attached table; one that loses its trust after (a
-- member of cdp_traits_admin no longer) leaves the table unread: stitching,
-- its checks and the calculation fail with the reason until it is given
-- back.  Only the function's owner ever ran it.
ALTER TABLE shop.events OWNER TO ingest;
GRANT cdp_traits_admin TO ingest;
ALTER TABLE shop.events OWNER TO ingest;
REVOKE cdp_traits_admin FROM ingest;
SET ROLE ingest;
CREATE FUNCTION shop.noisy() RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, 'index predicate'); RETURN true; END $$;
CREATE FUNCTION shop.folded(int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RETURN shop.noisy(); END $$;
CREATE INDEX events_folded ON shop.events (id) WHERE shop.folded(1);
INSERT INTO shop.events VALUES (7, 'web', 'view', '1', '2024-01-07', '{"email": "b@x.org"}');
RESET ROLE;
SET ROLE cdp_admin;
SELECT cdp_traits.restitch();
SELECT cdp_traits.calculate_attributes(force => true);
RESET ROLE;
SELECT count(*) FROM cdp_traits.verify_stitching();
SELECT cdp_traits.run_jobs();
SELECT who, what, count(*) FROM shop.pwned GROUP BY 1, 2 ORDER BY 1, 2;
-- given back (and the index gone), all is read again
DROP INDEX shop.events_folded;
ALTER TABLE shop.events OWNER TO CURRENT_USER;
GRANT INSERT ON shop.events TO ingest;
SELECT count(*) FROM cdp_traits.verify_stitching();
-- a partition of another owner is refused in the same way
CREATE TABLE shop.pevents (id bigint, source_id text, type text, version text,
                           event_time timestamptz, payload jsonb) PARTITION BY RANGE (id);
CREATE TABLE shop.pevents_1 PARTITION OF shop.pevents FOR VALUES FROM (0) TO (100);
ALTER TABLE shop.pevents_1 OWNER TO ingest;
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
RESET client_min_messages;
SELECT cdp_traits.attach_events('shop.pevents');
ALTER TABLE shop.pevents_1 OWNER TO CURRENT_USER;
SET client_min_messages = warning;
SELECT cdp_traits.attach_events('shop.pevents');
RESET client_min_messages;
CREATE TABLE shop.pevents_2 (LIKE shop.pevents);
ALTER TABLE shop.pevents_2 OWNER TO ingest;
ALTER TABLE shop.pevents ATTACH PARTITION shop.pevents_2 FOR VALUES FROM (100) TO (200);
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP VIEW cdp_traits.customer_events;
SELECT cdp_traits.attach_events('shop.events');
RESET client_min_messages;

-- Rows pg_restore loads are not stitched (the dump holds their stitching),
-- but only a superuser's session is taken for pg_restore: the ingest role
-- naming its session so still has its events stitched (the check is made as
-- the inserting role, not as the owner the trigger runs as).
-- Nor is a SECURITY DEFINER function of a superuser's (an ingestion API)
-- that the ingest role calls so: it is still the ingest role's session.
CREATE FUNCTION shop.ingest_api(bigint, jsonb) RETURNS void LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS
$$ INSERT INTO shop.events VALUES ($1, 'api', 'view', '1', '2024-01-09', $2) $$;
REVOKE EXECUTE ON FUNCTION shop.ingest_api(bigint, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION shop.ingest_api(bigint, jsonb) TO ingest;
SET ROLE ingest;
SET application_name = 'pg_restore';
INSERT INTO shop.events VALUES (8, 'web', 'view', '1', '2024-01-08', '{"email": "b@x.org"}');
SELECT shop.ingest_api(9, '{"email": "b@x.org"}');
RESET application_name;
RESET ROLE;
SELECT id, customer_entity_id IS NOT NULL AS stitched FROM cdp_traits.customer_events WHERE id IN (8, 9) ORDER BY id;
SELECT count(*) AS problems FROM cdp_traits.verify_stitching();

-- Any role may make a view over the pivot and its published copies, even
-- one that may not read them (the ingest role here, with a temporary view).
-- Such a view does not keep admins from adding an attribute: the new column
-- is appended to the views in place.  (Removing one still needs the views
-- gone: see the README.)
SELECT cdp_traits.publish('shop');
SET ROLE ingest;
CREATE TEMP VIEW over_published AS SELECT * FROM shop.pivoted_customer_attributes;
CREATE TEMP VIEW over_pivot AS SELECT * FROM cdp_traits.pivoted_customer_attributes;
SET ROLE cdp_admin;
INSERT INTO cdp_traits.attributes VALUES ('pages', '{"type": "num_of_unique", "value": "payload->>''page''"}');
RESET ROLE;
SELECT attname FROM pg_attribute WHERE attrelid = 'shop.pivoted_customer_attributes'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT pg_temp.privs('cdp_traits_reader', 'shop.pivoted_customer_attributes'::regclass) AS reader;
DROP VIEW pg_temp.over_published, pg_temp.over_pivot;
SET ROLE cdp_admin;
DELETE FROM cdp_traits.attributes WHERE id = 'pages';
RESET ROLE;
SELECT cdp_traits.unpublish();

-- A row-level security policy on the events table would run its function
-- as whoever reads the table.  The triggers read it as the extension owner
-- (no policy applies); the calculation reads it directly for a few entities
-- and refuses to have a policy applied, rather than run the function with
-- the admin's rights.
CREATE FUNCTION shop.watch() RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO shop.pwned VALUES (current_user, 'policy'); RETURN true; END $$;
ALTER TABLE shop.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY watch ON shop.events FOR SELECT USING (shop.watch());
CREATE POLICY ingest ON shop.events FOR INSERT WITH CHECK (true);
SET ROLE ingest;
INSERT INTO shop.events VALUES (6, 'web', 'view', '1', '2024-01-06', '{"email": "b@x.org", "page": "faq"}');
RESET ROLE;
SET ROLE cdp_admin;
SELECT cdp_traits.calculate_attributes();
RESET ROLE;
SELECT who, what, count(*) FROM shop.pwned GROUP BY 1, 2 ORDER BY 1, 2;
-- So does the refresh of context, however it is called (refresh_context()
-- itself, run_jobs()' and the worker's first job, or calculate_attributes(),
-- which refreshes first): a query over such a table is refused and recorded
-- as its key's error.  Called itself, the refresh ran the policy's function
-- as the admin and stored the count the policy let through.
SET ROLE cdp_admin;
INSERT INTO cdp_traits.context (key, query) VALUES ('shop_events', 'SELECT count(*) FROM shop.events');
SELECT cdp_traits.refresh_context() AS refreshed;
SELECT key, value, error FROM cdp_traits.context WHERE key = 'shop_events';
DELETE FROM cdp_traits.context WHERE key = 'shop_events';
RESET ROLE;
SELECT who, what, count(*) FROM shop.pwned GROUP BY 1, 2 ORDER BY 1, 2;

SET client_min_messages = warning;
DROP SCHEMA shop CASCADE;
RESET client_min_messages;
DROP OWNED BY ingest, cdp_admin, cdp_reader;
DROP ROLE ingest, cdp_admin, cdp_reader;
DROP EXTENSION cdp_traits;
-- The roles are cluster-wide and outlive the extension (other databases may use them).
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname IN ('cdp_traits_admin', 'cdp_traits_reader');
CREATE EXTENSION cdp_traits;
