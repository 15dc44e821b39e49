-- customer_events follows the columns of the events table: dropped, retyped
-- and renamed columns, with its published copies and their privileges; and a
-- CASCADE drop that reaches a published view never takes the extension (and
-- every stitched entity and attribute) with it.
DROP EXTENSION IF EXISTS cdp_traits;
CREATE EXTENSION cdp_traits;
SET client_min_messages = notice;
CREATE SCHEMA app;
CREATE TABLE app.events (id text PRIMARY KEY, source_id text, type text, version text,
                         event_time timestamptz, payload jsonb,
                         channel text, extra int, note varchar(10), "Mixed Case" text);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('email', $$payload->>'email'$$);
INSERT INTO app.events VALUES
  ('e1', 'web', 'view', '1', '2024-01-01', '{"email": "a@x", "page": "home"}', 'web', 1, 'n1', 'm'),
  ('e2', 'web', 'view', '1', '2024-01-02', '{"email": "b@x", "page": "cart"}', 'app', 2, 'n2', 'm');
SELECT cdp_traits.attach_events('app.events');
INSERT INTO cdp_traits.attributes VALUES ('pages', '{"type": "num_of_unique", "value": "payload->>''page''"}');
SELECT cdp_traits.calculate_attributes();
CREATE SCHEMA mart;
CREATE SCHEMA mart2;
SELECT cdp_traits.publish('mart');
SELECT cdp_traits.publish('mart2');
CREATE ROLE cdp_cols_analyst;
GRANT SELECT ON cdp_traits.customer_events TO cdp_cols_analyst;
GRANT SELECT ON mart.customer_events TO cdp_cols_analyst WITH GRANT OPTION;

CREATE FUNCTION pg_temp.columns(v regclass) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
    FROM pg_attribute WHERE attrelid = v AND attnum > 0 AND NOT attisdropped
$$;
-- (initial: a member's privileges are those it joined the extension with,
-- which pg_dump leaves out; the GRANT of one's own below is not one of them)
CREATE FUNCTION pg_temp.state() RETURNS TABLE (view text, members boolean, initial boolean, analyst text)
LANGUAGE sql AS $$
  SELECT c.oid::regclass::text,
         EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'),
         (SELECT i.initprivs = c.relacl FROM pg_init_privs i
           WHERE i.objoid = c.oid AND i.classoid = 'pg_class'::regclass AND i.objsubid = 0),
         (SELECT string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',')
            FROM aclexplode(c.relacl) a WHERE a.grantee = 'cdp_cols_analyst'::regrole)
    FROM pg_class c
   WHERE c.relname IN ('customer_events', 'pivoted_customer_attributes') AND c.relkind = 'v'
   ORDER BY 1
$$;
SELECT * FROM pg_temp.state();

-- a column dropped: the view and its copies are made again without it,
-- with the privileges they had
ALTER TABLE app.events DROP COLUMN extra;
SELECT pg_temp.columns('cdp_traits.customer_events');
SELECT pg_temp.columns('mart.customer_events') = pg_temp.columns('cdp_traits.customer_events') AS copy_follows;
SELECT * FROM pg_temp.state();
SELECT id, channel, customer_entity_id IS NOT NULL AS stitched FROM mart2.customer_events ORDER BY id;
-- a column retyped
ALTER TABLE app.events ALTER COLUMN note TYPE text;
SELECT pg_temp.columns('mart2.customer_events');
-- dropped with another added in one command (the view lists the table's
-- columns in their order)
ALTER TABLE app.events DROP COLUMN "Mixed Case", ADD COLUMN campaign text;
SELECT pg_temp.columns('cdp_traits.customer_events');
-- in a transaction rolled back, nothing changes
BEGIN;
ALTER TABLE app.events DROP COLUMN note;
SELECT pg_temp.columns('mart.customer_events');
ROLLBACK;
SELECT pg_temp.columns('mart.customer_events');
SELECT * FROM pg_temp.state();

-- a column renamed: renamed in place in the view and its copies, and views
-- of one's own over them stay
CREATE VIEW public.by_channel AS SELECT id, channel FROM mart.customer_events;
ALTER TABLE app.events RENAME COLUMN channel TO medium;
SELECT pg_temp.columns('cdp_traits.customer_events');
SELECT pg_temp.columns('mart2.customer_events');
SELECT * FROM public.by_channel ORDER BY id;
-- then a column added joins at the end, as before
ALTER TABLE app.events ADD COLUMN score numeric;
SELECT pg_temp.columns('mart.customer_events');

-- objects of one's own over the view or a copy: a drop or a change of type
-- is refused, naming them, and nothing changes
ALTER TABLE app.events DROP COLUMN note;
ALTER TABLE app.events ALTER COLUMN note TYPE varchar(20);
SELECT pg_temp.columns('mart.customer_events');
-- with CASCADE they go (as PostgreSQL promises), and the extension's views
-- are made again
ALTER TABLE app.events DROP COLUMN note CASCADE;
SELECT to_regclass('public.by_channel') AS own_view;
SELECT pg_temp.columns('mart.customer_events');
SELECT * FROM pg_temp.state();
-- a column stitching reads stays refused, whatever the dependents
ALTER TABLE app.events DROP COLUMN payload;
ALTER TABLE app.events DROP COLUMN payload CASCADE;
ALTER TABLE app.events ALTER COLUMN version TYPE varchar(5);
SELECT pg_temp.columns('cdp_traits.customer_events');
-- nor may a column take the name of the one customer_events adds: its
-- views would no longer follow the table, and calculations over a few
-- entities would fail (column reference "customer_entity_id" is ambiguous)
ALTER TABLE app.events ADD COLUMN customer_entity_id uuid;
ALTER TABLE app.events RENAME COLUMN score TO customer_entity_id;
SELECT pg_temp.columns('cdp_traits.customer_events');
-- only the table's owner may change it: another role's command fails
-- before the views are touched
CREATE ROLE cdp_cols_other;
GRANT USAGE ON SCHEMA app TO cdp_cols_other;
SET ROLE cdp_cols_other;
ALTER TABLE app.events DROP COLUMN campaign;
RESET ROLE;
SELECT pg_temp.columns('mart.customer_events');

-- stitching and the calculation go on over the changed table
INSERT INTO app.events (id, source_id, type, version, event_time, payload, medium)
VALUES ('e3', 'app', 'view', '1', '2024-01-03', '{"email": "a@x", "page": "pay"}', 'app');
SELECT cdp_traits.calculate_attributes();
SELECT id, medium, pages FROM mart.customer_events ce
  JOIN mart.pivoted_customer_attributes p USING (customer_entity_id) ORDER BY id;
SELECT * FROM cdp_traits.verify_stitching();

-- A CASCADE drop that reaches the published views drops them as plain
-- views; the extension and its data stay.  Before, PostgreSQL turned each
-- of these into DROP EXTENSION.
SELECT count(*) AS entities_before FROM cdp_traits.customer_entities;
-- the published schema (its owner may drop it: it is theirs)
CREATE ROLE cdp_cols_mart_owner;
ALTER SCHEMA mart2 OWNER TO cdp_cols_mart_owner;
SET ROLE cdp_cols_mart_owner;
DROP SCHEMA mart2 CASCADE;
RESET ROLE;
SELECT * FROM pg_temp.state();
-- the same through DROP OWNED
CREATE SCHEMA mart3 AUTHORIZATION cdp_cols_mart_owner;
SELECT cdp_traits.publish('mart3');
DROP OWNED BY cdp_cols_mart_owner CASCADE;
SELECT * FROM pg_temp.state();
-- customer_events itself, the events table, and the events table's schema
BEGIN;
DROP VIEW cdp_traits.customer_events CASCADE;
SELECT * FROM pg_temp.state();
ROLLBACK;
BEGIN;
DROP TABLE app.events CASCADE;
SELECT * FROM pg_temp.state();
SELECT count(*) AS entities FROM cdp_traits.customer_entities;
ROLLBACK;
BEGIN;
DROP SCHEMA app CASCADE;
SELECT * FROM pg_temp.state();
SELECT count(*) AS entities FROM cdp_traits.customer_entities;
ROLLBACK;
SELECT extname FROM pg_extension WHERE extname = 'cdp_traits';
SELECT * FROM pg_temp.state();
-- a drop that reaches no published view leaves them as they are
CREATE TABLE public.scratch (x int);
CREATE VIEW public.scratch_view AS SELECT x FROM public.scratch;
DROP TABLE public.scratch CASCADE;
SELECT * FROM pg_temp.state();
-- a cancel while the views follow a change (the statement's timeout, here
-- reached in an event trigger of one's own on CREATE VIEW) cancels the
-- command, as anywhere else (it was taken for a failure to follow: the
-- command went through, with a warning)
CREATE FUNCTION public.slow_view() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(2); END $$;
CREATE EVENT TRIGGER slow_view ON ddl_command_start WHEN TAG IN ('CREATE VIEW')
  EXECUTE FUNCTION public.slow_view();
SET statement_timeout = '500ms';
\set VERBOSITY terse
ALTER TABLE app.events ADD COLUMN late text;
\set VERBOSITY default
RESET statement_timeout;
DROP EVENT TRIGGER slow_view;
DROP FUNCTION public.slow_view();
SELECT count(*) AS late_column FROM pg_attribute
 WHERE attrelid = 'app.events'::regclass AND attname = 'late' AND NOT attisdropped;
-- DROP EXTENSION still drops the published views and customer_events with it
DROP EXTENSION cdp_traits CASCADE;
SELECT count(*) AS views_left FROM pg_class WHERE relname IN ('customer_events', 'pivoted_customer_attributes');

DROP SCHEMA mart, app CASCADE;
DROP ROLE cdp_cols_analyst;
DROP ROLE cdp_cols_other;
DROP ROLE cdp_cols_mart_owner;
CREATE EXTENSION cdp_traits;
