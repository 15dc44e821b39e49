-- The event triggers around DDL (src/ddl_guard.c) with every kind of
-- command that can cascade: a DROP ... CASCADE of any kind of object goes
-- through as PostgreSQL runs it; whatever path a cascade takes to the
-- published views (a type, a domain, a function, a parent table, a typed
-- table's type), the extension and its data stay and customer_events is
-- made again; the guards fire in replica sessions too; and a published
-- view swapped for another relation during a command is refused.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits;
CREATE EXTENSION cdp_traits;
SET client_min_messages = notice;

-- Drops of every kind of object, with CASCADE, where nothing is attached or
-- published (each was refused with "unrecognized lock mode: 0" before)
CREATE FUNCTION public.g_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE public.g_enum AS ENUM ('a');
CREATE DOMAIN public.g_dom AS int;
CREATE COLLATION public.g_coll (provider = libc, locale = 'C');
CREATE TEXT SEARCH CONFIGURATION public.g_ts (COPY = pg_catalog.simple);
CREATE TABLE public.g_t (x int);
CREATE VIEW public.g_v AS SELECT x FROM public.g_t;
CREATE POLICY g_p ON public.g_t USING (true);
CREATE RULE g_r AS ON UPDATE TO public.g_t DO INSTEAD NOTHING;
CREATE FUNCTION public.g_tf() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER g_tr BEFORE INSERT ON public.g_t FOR EACH ROW EXECUTE FUNCTION public.g_tf();
DROP FUNCTION public.g_f() CASCADE;
DROP TYPE public.g_enum CASCADE;
DROP DOMAIN public.g_dom CASCADE;
DROP COLLATION public.g_coll CASCADE;
DROP TEXT SEARCH CONFIGURATION public.g_ts CASCADE;
DROP POLICY g_p ON public.g_t CASCADE;
DROP RULE g_r ON public.g_t CASCADE;
DROP TRIGGER g_tr ON public.g_t CASCADE;
DROP FUNCTION public.g_tf() CASCADE;
DROP FUNCTION IF EXISTS public.g_missing() CASCADE;
DROP TYPE IF EXISTS public.g_missing CASCADE;
DROP TABLE public.g_t CASCADE;

-- An events table whose columns come from a parent, one of a composite
-- type's typed tables, and a column of a type of one's own
CREATE SCHEMA app;
CREATE TYPE app.level AS ENUM ('low', 'high');
CREATE DOMAIN app.score AS int CHECK (VALUE >= 0);
CREATE FUNCTION app.twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 2 * $1';
CREATE TABLE app.base (id text, source_id text, type text, version text,
                       event_time timestamptz, payload jsonb, note text);
CREATE TABLE app.events (level app.level, score app.score, n int,
                         doubled int GENERATED ALWAYS AS (app.twice(n)) STORED,
                         PRIMARY KEY (id)) INHERITS (app.base);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('email', $$payload->>'email'$$);
INSERT INTO app.events (id, source_id, type, version, event_time, payload, note, level, score, n) VALUES
  ('e1', 'web', 'view', '1', '2024-01-01', '{"email": "a@x", "page": "home"}', 'n1', 'low', 1, 1),
  ('e2', 'web', 'view', '1', '2024-01-02', '{"email": "a@x", "page": "cart"}', 'n2', 'high', 2, 2),
  ('e3', 'web', 'view', '1', '2024-01-03', '{"email": "b@x", "page": "home"}', 'n3', 'low', 3, 3);
SELECT cdp_traits.attach_events('app.events');
INSERT INTO cdp_traits.attributes VALUES ('pages', '{"type": "num_of_unique", "value": "payload->>''page''"}');
SELECT cdp_traits.calculate_attributes();
CREATE SCHEMA mart;
SELECT cdp_traits.publish('mart');
CREATE ROLE cdp_guard_analyst;
GRANT SELECT ON cdp_traits.customer_events TO cdp_guard_analyst;

CREATE FUNCTION pg_temp.state() RETURNS TABLE (extension boolean, entities bigint, problems bigint,
                                               view_columns text, published boolean, analyst boolean)
LANGUAGE sql AS $$
  SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'cdp_traits'),
         (SELECT count(*) FROM cdp_traits.customer_entities),
         (SELECT count(*) FROM cdp_traits.verify_stitching()),
         (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
           WHERE attrelid = to_regclass('cdp_traits.customer_events') AND attnum > 0 AND NOT attisdropped),
         EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = to_regclass('mart.customer_events')
                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'),
         has_table_privilege('cdp_guard_analyst', 'cdp_traits.customer_events', 'SELECT')
$$;
SELECT * FROM pg_temp.state();

-- a column's type dropped with CASCADE (the column goes, customer_events is
-- made again without it, its privileges kept)
DROP TYPE app.level CASCADE;
SELECT * FROM pg_temp.state();
-- a domain, and a function a generated column calls
DROP DOMAIN app.score CASCADE;
DROP FUNCTION app.twice(int) CASCADE;
SELECT * FROM pg_temp.state();
-- a column of the parent: without CASCADE too (customer_events is made again)
ALTER TABLE app.base DROP COLUMN note;
SELECT * FROM pg_temp.state();
ALTER TABLE app.base ADD COLUMN note2 text;
SELECT * FROM pg_temp.state();
CREATE VIEW public.own_view AS SELECT id, note2 FROM mart.customer_events;
ALTER TABLE app.base DROP COLUMN note2;
ALTER TABLE app.base DROP COLUMN note2 CASCADE;
SELECT * FROM pg_temp.state();
-- a column stitching reads, through the parent: refused
ALTER TABLE app.base DROP COLUMN payload;
-- the calculation goes on, over a new event
INSERT INTO app.events (id, source_id, type, version, event_time, payload, n)
VALUES ('e4', 'web', 'view', '1', '2024-01-04', '{"email": "b@x", "page": "pay"}', 4);
SELECT cdp_traits.calculate_attributes();
SELECT c.id, p.pages FROM mart.customer_events c JOIN mart.pivoted_customer_attributes p USING (customer_entity_id)
 ORDER BY c.id;

-- In a replica session (session_replication_role = replica, which loading
-- tools set to skip triggers) the guards fire all the same
SET session_replication_role = replica;
BEGIN;
DROP SCHEMA mart CASCADE;
SELECT * FROM pg_temp.state();
ROLLBACK;
RESET session_replication_role;
SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'cdp_traits%' ORDER BY 1;

-- A published view dropped and replaced by another relation of its name
-- while a CASCADE command runs (here by a CHECK constraint's function) is
-- refused: the whole command is undone
CREATE FUNCTION public.swap() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_depend WHERE objid = to_regclass('mart.customer_events') AND deptype = 'e') THEN
    DROP VIEW mart.customer_events;
    CREATE VIEW mart.customer_events AS SELECT 1 AS spoofed;
  END IF;
  RETURN true;
END $$;
ALTER TABLE app.events DROP CONSTRAINT IF EXISTS nope CASCADE, ADD CONSTRAINT ck CHECK (public.swap());
SELECT * FROM pg_temp.state();
SELECT count(*) AS spoofed FROM pg_attribute WHERE attrelid = 'mart.customer_events'::regclass AND attname = 'spoofed';

-- A typed events table: ALTER TYPE ... DROP ATTRIBUTE ... CASCADE dropped
-- the extension before
SET client_min_messages = warning;
SELECT cdp_traits.detach_events();
DROP SCHEMA app CASCADE;
SET client_min_messages = notice;
CREATE SCHEMA app;
CREATE TYPE app.ev_t AS (id text, source_id text, type text, version text,
                         event_time timestamptz, payload jsonb, note text);
CREATE TABLE app.events OF app.ev_t (PRIMARY KEY (id));
INSERT INTO app.events VALUES ('t1', 'web', 'view', '1', '2024-01-01', '{"email": "a@x"}', 'n');
SELECT cdp_traits.attach_events('app.events');
SELECT cdp_traits.publish('mart');
GRANT SELECT ON cdp_traits.customer_events TO cdp_guard_analyst;
ALTER TYPE app.ev_t DROP ATTRIBUTE note CASCADE;
SELECT * FROM pg_temp.state();
-- an attribute added to the type joins customer_events as a column would
ALTER TYPE app.ev_t ADD ATTRIBUTE channel text CASCADE;
SELECT * FROM pg_temp.state();
ALTER TYPE app.ev_t DROP ATTRIBUTE payload CASCADE;
SELECT * FROM pg_temp.state();

SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
DROP SCHEMA app, mart CASCADE;
DROP VIEW IF EXISTS public.own_view;
DROP FUNCTION public.swap();
DROP ROLE cdp_guard_analyst;
CREATE EXTENSION cdp_traits;
