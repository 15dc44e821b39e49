-- Stitching rules and the objects their expressions use: a drop or rename
-- that would leave a rule unable to compile is refused (src/rule_guard.c),
-- naming the rule; a rule that does not compile anyway is named wherever
-- stitching needs it, and nothing else fails because of it; a rule that
-- does not compile can be changed or deleted.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA rd;
CREATE TABLE rd.events (id bigint PRIMARY KEY, source_id text, type text, version text,
                        event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('rd.events');

-- What rules use: a function, a schema's function, an enum type, an
-- operator, a collation, a cast, a table, another extension's type, a
-- function of a role of its own.
CREATE FUNCTION public.rd_norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT lower($1)$$;
CREATE SCHEMA rd_analytics;
CREATE FUNCTION rd_analytics.f(jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT $1->>'phone'$$;
CREATE FUNCTION rd_analytics.g(jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT $1->>'fax'$$;
CREATE TYPE public.rd_kind AS ENUM ('gold', 'silver');
CREATE FUNCTION public.rd_concat(text, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT $1 || ':' || $2$$;
CREATE OPERATOR public.### (LEFTARG = text, RIGHTARG = text, FUNCTION = public.rd_concat);
CREATE COLLATION public.rd_coll FROM "C";
CREATE TYPE public.rd_pair AS (a int, b int);
CREATE FUNCTION public.rd_pair_of(int) RETURNS public.rd_pair LANGUAGE sql IMMUTABLE AS $$SELECT ROW($1, $1)::public.rd_pair$$;
CREATE CAST (int AS public.rd_pair) WITH FUNCTION public.rd_pair_of(int);
CREATE TABLE public.rd_map (alias text PRIMARY KEY, canon text);
INSERT INTO public.rd_map VALUES ('al', 'alice');
CREATE ROLE rd_role;
CREATE FUNCTION public.rd_owned(text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT upper($1)$$;
ALTER FUNCTION public.rd_owned(text) OWNER TO rd_role;
-- unrelated objects, dropped and renamed freely below
CREATE FUNCTION public.rd_unused(text) RETURNS text LANGUAGE sql AS $$SELECT $1$$;
CREATE TABLE public.rd_unrelated (a int);

INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$public.rd_norm(payload->>'email')$$),
  ('phone', $$rd_analytics.f(payload)$$),
  ('fax', $$rd_analytics.g(payload)$$),
  ('kind', $$(payload->>'kind')::public.rd_kind$$),
  ('op', $$(payload->>'a') OPERATOR(public.###) (payload->>'b')$$),
  ('coll', $$lower(payload->>'name' COLLATE public.rd_coll)$$),
  ('pair', $$((payload->>'n')::int::public.rd_pair).a$$),
  ('alias', $$(SELECT m.canon FROM public.rd_map m WHERE m.alias = payload->>'alias')$$),
  ('ci', $$(payload->>'login')::public.citext$$),
  ('owned', $$public.rd_owned(payload->>'code')$$);
INSERT INTO rd.events VALUES
  (1, 'web', 'visit', '1', '2025-01-01', '{"email": "Ann@x.org", "phone": "1"}'),
  (2, 'crm', 'signup', '1', '2025-01-02', '{"email": "ann@x.org", "kind": "gold"}'),
  (3, 'app', 'open', '1', '2025-01-03', '{"a": "p", "b": "q", "n": "5", "alias": "al", "login": "Bob", "code": "z"}');
RESET client_min_messages;
SELECT count(*) AS identifiers FROM cdp_traits.matching;

-- 1. Every drop or rename that would break a rule is refused, naming it
DROP FUNCTION public.rd_norm(text);
DROP FUNCTION public.rd_norm(text) CASCADE;
DROP TYPE public.rd_kind CASCADE;
DROP FUNCTION public.rd_concat(text, text) CASCADE;
DROP EXTENSION citext CASCADE;
ALTER FUNCTION public.rd_norm(text) RENAME TO rd_norm2;
ALTER FUNCTION public.rd_norm(text) SET SCHEMA rd;
-- (two rules at once)
DROP SCHEMA rd_analytics CASCADE;
ALTER SCHEMA rd_analytics RENAME TO rd_analytics2;
DROP FUNCTION rd_analytics.f(jsonb);
DROP TYPE public.rd_kind;
ALTER TYPE public.rd_kind RENAME TO rd_kind2;
DROP OPERATOR public.### (text, text);
DROP COLLATION public.rd_coll;
DROP CAST (int AS public.rd_pair);
DROP TABLE public.rd_map;
ALTER TABLE public.rd_map RENAME COLUMN canon TO canonical;
ALTER TABLE public.rd_map RENAME TO rd_map2;
DROP EXTENSION citext;
DROP OWNED BY rd_role;
-- (several commands in one statement: the one that breaks a rule is named)
DROP FUNCTION public.rd_unused(text), public.rd_norm(text);
-- nothing was dropped or renamed
SELECT to_regprocedure('public.rd_norm(text)') IS NOT NULL AS norm,
       to_regprocedure('rd_analytics.f(jsonb)') IS NOT NULL AS f,
       to_regtype('public.rd_kind') IS NOT NULL AS kind,
       to_regoperator('public.###(text,text)') IS NOT NULL AS op,
       (SELECT count(*) FROM pg_collation WHERE collname = 'rd_coll') AS coll,
       (SELECT count(*) FROM pg_cast WHERE casttarget = 'public.rd_pair'::regtype) AS casts,
       to_regclass('public.rd_map') IS NOT NULL AS map,
       (SELECT count(*) FROM pg_extension WHERE extname = 'citext') AS citext,
       to_regprocedure('public.rd_owned(text)') IS NOT NULL AS owned,
       to_regprocedure('public.rd_unused(text)') IS NOT NULL AS unused;

-- ... and so is an ALTER TABLE or ALTER TYPE that drops or retypes a column
-- a rule's subquery reads, or an attribute of a composite type it reads, or
-- that renames an enum label a literal of a rule names
ALTER TABLE public.rd_map DROP COLUMN canon;
ALTER TABLE public.rd_map ADD COLUMN note text, DROP COLUMN canon;
ALTER TABLE public.rd_map ALTER COLUMN alias TYPE int USING 0;
ALTER TYPE public.rd_pair DROP ATTRIBUTE a;
SET client_min_messages = warning;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('tier', $$CASE WHEN (payload->>'kind')::public.rd_kind = 'gold' THEN payload->>'email' END$$);
RESET client_min_messages;
ALTER TYPE public.rd_kind RENAME VALUE 'gold' TO 'golden';
SELECT (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = 'public.rd_map'::regclass AND attnum > 0 AND NOT attisdropped) AS map_columns,
       (SELECT format_type(atttypid, NULL) FROM pg_attribute
         WHERE attrelid = 'public.rd_map'::regclass AND attname = 'alias') AS alias_type,
       (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'public.rd_pair'::regtype) AND attnum > 0 AND NOT attisdropped) AS pair_attributes,
       enum_range(NULL::public.rd_kind) AS labels;
-- what no rule reads may change
ALTER TABLE public.rd_map ADD COLUMN note text;
ALTER TABLE public.rd_map ALTER COLUMN note TYPE varchar, ALTER COLUMN canon TYPE varchar;
ALTER TABLE public.rd_map DROP COLUMN note;
ALTER TYPE public.rd_pair ALTER ATTRIBUTE b TYPE bigint;
ALTER TYPE public.rd_kind RENAME VALUE 'silver' TO 'argent';
ALTER TYPE public.rd_kind RENAME VALUE 'argent' TO 'silver';
SET client_min_messages = warning;
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'tier';
RESET client_min_messages;
ALTER TYPE public.rd_kind RENAME VALUE 'gold' TO 'golden';
ALTER TYPE public.rd_kind RENAME VALUE 'golden' TO 'gold';

-- Unrelated DDL is not held up
CREATE FUNCTION public.rd_other(int) RETURNS int LANGUAGE sql AS $$SELECT $1$$;
ALTER FUNCTION public.rd_other(int) RENAME TO rd_other2;
DROP FUNCTION public.rd_other2(int);
CREATE TABLE public.rd_tmp (a int);
DROP TABLE public.rd_tmp;
ALTER TABLE public.rd_unrelated RENAME TO rd_unrelated2;
ALTER TABLE public.rd_unrelated2 RENAME TO rd_unrelated;

-- Once no rule uses it, the object may go
UPDATE cdp_traits.stitching_rules SET value_expression = $$lower(payload->>'email')$$
 WHERE attribute_id = 'email';
DROP FUNCTION public.rd_norm(text);
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'ci';
DROP EXTENSION citext;
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'owned';
DROP OWNED BY rd_role;
DROP ROLE rd_role;
-- stitching works with the rules left
INSERT INTO rd.events VALUES (5, 'web', 'visit', '1', '2025-01-05', '{"phone": "1"}');
SELECT count(*) AS identifiers FROM cdp_traits.matching;

-- 2. A rule that does not compile anyway (the guard switched off): stitching
-- names it, and nothing else fails because of it.
ALTER EVENT TRIGGER cdp_traits_ddl_start DISABLE;
ALTER EVENT TRIGGER cdp_traits_ddl_end DISABLE;
DROP FUNCTION rd_analytics.f(jsonb);
ALTER EVENT TRIGGER cdp_traits_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
-- (the plans kept from the inserts above went stale: the rules are compiled again)
INSERT INTO rd.events VALUES (4, 'web', 'visit', '1', '2025-01-04', '{"email": "cy@x.org"}');
UPDATE rd.events SET payload = '{"email": "ann@x.org"}' WHERE id = 3;
DELETE FROM rd.events WHERE id = 1;
SELECT cdp_traits.restitch();
SELECT * FROM cdp_traits.verify_stitching();
\set SHOW_CONTEXT never
SELECT count(*) FROM cdp_traits.explain_entity((SELECT customer_entity_id FROM cdp_traits.matching LIMIT 1));
\set SHOW_CONTEXT errors
-- nothing of it was written
SELECT count(*) AS events, (SELECT count(*) FROM cdp_traits.event_entities) AS assigned FROM rd.events;
-- DDL that does not concern the events table, and DDL that drops or renames
-- something no rule uses, go on
CREATE TABLE public.rd_unrelated_too (a int);
ALTER TABLE public.rd_unrelated ADD COLUMN b int;
ALTER TABLE public.rd_unrelated DROP COLUMN b;
DROP TABLE public.rd_unrelated_too;
DROP FUNCTION public.rd_unused(text);
ALTER FUNCTION public.rd_concat(text, text) RENAME TO rd_concat2;
-- so does the events table's own DDL that needs no rules
ALTER TABLE rd.events ADD COLUMN note text;
ALTER TABLE rd.events DROP COLUMN note;
-- ... and what reads the configuration but not the rules
SELECT cdp_traits._event_id_of_key('k') AS id_of_key;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('rd_email', '{"type": "last", "value": "payload->>''email''"}');
SELECT cdp_traits.calculate_attributes(true) AS calculated;
SELECT count(*) AS values FROM cdp_traits.customer_attributes WHERE attribute_id = 'rd_email';
DELETE FROM cdp_traits.attributes WHERE id = 'rd_email';
-- but a drop that breaks another rule is still refused
DROP FUNCTION rd_analytics.g(jsonb);
-- two rules that do not compile are named together
ALTER EVENT TRIGGER cdp_traits_ddl_start DISABLE;
ALTER EVENT TRIGGER cdp_traits_ddl_end DISABLE;
DROP COLLATION public.rd_coll;
ALTER EVENT TRIGGER cdp_traits_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
INSERT INTO rd.events VALUES (4, 'web', 'visit', '1', '2025-01-04', '{"email": "cy@x.org"}');

-- 3. The broken rules can be changed and deleted (a bad replacement is
-- still rejected, naming it), and stitching works again
UPDATE cdp_traits.stitching_rules SET value_expression = $$rd_analytics.nope(payload)$$
 WHERE attribute_id = 'phone';
UPDATE cdp_traits.stitching_rules SET value_expression = $$payload->>'phone'$$
 WHERE attribute_id = 'phone';
SELECT cdp_traits.restitch();
DELETE FROM cdp_traits.stitching_rules WHERE attribute_id = 'coll';
-- a rule whose object comes back compiles again
ALTER EVENT TRIGGER cdp_traits_ddl_start DISABLE;
ALTER EVENT TRIGGER cdp_traits_ddl_end DISABLE;
DROP FUNCTION rd_analytics.g(jsonb);
ALTER EVENT TRIGGER cdp_traits_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
INSERT INTO rd.events VALUES (4, 'web', 'visit', '1', '2025-01-04', '{"email": "Ann@x.org", "phone": "9"}');
CREATE FUNCTION rd_analytics.g(jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT $1->>'fax'$$;
INSERT INTO rd.events VALUES (4, 'web', 'visit', '1', '2025-01-04', '{"email": "Ann@x.org", "phone": "9"}');
DELETE FROM rd.events WHERE id = 1;
SELECT cdp_traits.restitch();
SELECT * FROM cdp_traits.verify_stitching();
SELECT array_agg(e.id ORDER BY e.id) AS entity_events
  FROM cdp_traits.customer_events e GROUP BY e.customer_entity_id ORDER BY 1;
SELECT attribute_id, value FROM cdp_traits.matching ORDER BY 1, 2;

-- DROP EXTENSION cdp_traits, with its rules, is not held up (nor what
-- they used, after it)
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
DROP SCHEMA rd_analytics CASCADE;
CREATE EXTENSION cdp_traits;
DROP SCHEMA rd CASCADE;
DROP TABLE public.rd_map, public.rd_unrelated;
DROP OPERATOR public.### (text, text);
DROP FUNCTION public.rd_concat2(text, text);
DROP CAST (int AS public.rd_pair);
DROP FUNCTION public.rd_pair_of(int);
DROP TYPE public.rd_pair, public.rd_kind;
RESET client_min_messages;
