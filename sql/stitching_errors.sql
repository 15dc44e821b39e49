-- Every way attach_events and the stitching rules reject bad input, and
-- that a rejected statement stores nothing.

-- attach: not a table, missing and mistyped columns (all named at once)
CREATE VIEW not_a_table AS SELECT 1 AS id;
SELECT cdp_traits.attach_events('not_a_table');
CREATE TABLE no_payload (id bigint, source_id text, type text, version text, event_time timestamptz);
SELECT cdp_traits.attach_events('no_payload');
CREATE TABLE bad_types (id bigint, source_id int, type text, event_time date, payload text);
SELECT cdp_traits.attach_events('bad_types');
CREATE TABLE no_equality (id point, source_id text, type text, version text, event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('no_equality');
SELECT cdp_traits.attach_events('no_such_table');
-- ids whose input runs functions that the type's owner chose: a domain (its
-- CHECK), a composite, range or array type (the input of their parts, which
-- may be domains).  Stitching turns stored keys back into ids as the
-- extension's owner, so whoever owns the events table could get code of
-- their own run as that owner: rejected, and nothing of theirs ran.
CREATE TABLE spy_calls (who name);
CREATE FUNCTION spy(v text) RETURNS boolean
LANGUAGE sql AS $$ INSERT INTO spy_calls VALUES (current_user) RETURNING true $$;
CREATE DOMAIN spied_id AS text CHECK (spy(VALUE));
CREATE TYPE spied_pair AS (a spied_id, b int);
CREATE TABLE domain_ids (id spied_id, source_id text, type text, version text, event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('domain_ids');
CREATE TABLE composite_ids (id spied_pair, source_id text, type text, version text, event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('composite_ids');
CREATE TABLE array_ids (id spied_id[], source_id text, type text, version text, event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('array_ids');
CREATE TABLE range_ids (id int4range, source_id text, type text, version text, event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('range_ids');
-- a column named customer_entity_id: customer_events adds its own (the
-- stitched entity), so the table's would be listed twice
CREATE TABLE own_entity_ids (id bigint, source_id text, type text, version text, event_time timestamptz,
                             payload jsonb, customer_entity_id uuid);
SELECT cdp_traits.attach_events('own_entity_ids');
SELECT count(*) AS spy_calls FROM spy_calls;
SELECT count(*) AS nothing_recorded FROM cdp_traits.events_source;
SELECT count(*) AS no_triggers FROM pg_trigger WHERE tgname LIKE 'cdp_traits%';

-- nothing attached yet
SELECT cdp_traits.detach_events();
SELECT cdp_traits.restitch();
SELECT * FROM cdp_traits.verify_stitching();

-- a table with extra columns, json payload and timestamp without time zone is fine
CREATE TABLE ev (id bigint PRIMARY KEY, source_id varchar(20), type text, version text,
                 event_time timestamp, payload json, extra text);
SELECT cdp_traits.attach_events('ev');
-- attaching twice, or a second table, is an error
SELECT cdp_traits.attach_events('ev');
CREATE TABLE ev2 (LIKE ev);
SELECT cdp_traits.attach_events('ev2');

-- rules: each bad one is rejected naming the rule, nothing stored
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'lower(payload->>''email''');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'lower(payload->>email_address)');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'no_such_function(payload)');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''a'', payload->>''b''');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''a'' FROM pg_class');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', '1); DROP TABLE ev; SELECT (1');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'count(payload)');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('  ', 'payload->>''email''');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', '');
-- one bad rule in a multi-row insert rejects the whole statement
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''email'''), ('phone', 'payload->>phone');
-- an update that breaks a rule is rejected too
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''email''');
UPDATE cdp_traits.stitching_rules SET value_expression = 'payload->>>''email''';
SELECT attribute_id, value_expression FROM cdp_traits.stitching_rules;
-- a duplicate rule is refused
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''email''');
SELECT count(*) AS ev_still_there FROM ev;

-- the trigger functions refuse to be called other than as installed
SELECT cdp_traits.stitch_events();
CREATE TABLE t (x int);
CREATE TRIGGER wrong BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION cdp_traits.stitch_events();
INSERT INTO t VALUES (1);
DROP TRIGGER wrong ON t;
CREATE TRIGGER wrong AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION cdp_traits.stitch_events();
INSERT INTO t VALUES (1);
DROP TABLE t;

-- without a unique index on id, duplicate event ids are rejected whole
INSERT INTO ev (id, source_id, type, version, event_time, payload)
VALUES (1, 'web', 'x', '1', '2025-01-01', '{"email": "a@x"}');
ALTER TABLE ev DROP CONSTRAINT ev_pkey;
INSERT INTO ev (id, source_id, type, version, event_time, payload)
VALUES (1, 'web', 'x', '1', '2025-01-01', '{"email": "b@x"}');
INSERT INTO ev (id, source_id, type, version, event_time, payload)
VALUES (2, 'web', 'x', '1', '2025-01-01', '{"email": "c@x"}'),
       (2, 'web', 'x', '1', '2025-01-01', '{"email": "d@x"}');
SELECT id, payload FROM ev;
SELECT attribute_id, value FROM cdp_traits.matching;
-- ... and so are updates that give an event the id of another one, with or
-- without identifiers (before: a duplicate key in event_entities, or, for an
-- event without identifiers, accepted, the event then listed in
-- customer_events with the other one's entity); ids that stay, swap or move
-- to free ones are fine
INSERT INTO ev (id, source_id, type, version, event_time, payload)
VALUES (3, 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}'),
       (4, 'web', 'x', '1', '2025-01-01', '{"page": "/"}'),
       (5, 'web', 'x', '1', '2025-01-01', '{"page": "/"}');
UPDATE ev SET id = 1 WHERE id = 3;
UPDATE ev SET id = 1 WHERE id = 4;
UPDATE ev SET id = 6 WHERE id IN (4, 5);
UPDATE ev SET id = 7 WHERE id = 5;
UPDATE ev SET id = CASE id WHEN 1 THEN 3 WHEN 3 THEN 1 ELSE id END, payload = (payload::jsonb || '{"n": 1}')::json;
UPDATE ev SET id = id + 10;
SELECT id, payload, customer_entity_id IS NOT NULL AS stitched FROM cdp_traits.customer_events ORDER BY id;
SELECT count(*) AS problems FROM cdp_traits.verify_stitching();
DELETE FROM ev WHERE id > 10;
INSERT INTO ev (id, source_id, type, version, event_time, payload)
VALUES (1, 'web', 'x', '1', '2025-01-01', '{"email": "a@x"}');

-- a column dropped while attached: the view is made again without it (more
-- in the events_columns test); detaching, dropping the view, altering and
-- attaching again works as well
ALTER TABLE ev DROP COLUMN extra;
SELECT cdp_traits.detach_events();
DROP VIEW cdp_traits.customer_events;
ALTER TABLE ev ADD COLUMN campaign text;
SELECT cdp_traits.attach_events('ev');
SELECT attname FROM pg_attribute
 WHERE attrelid = 'cdp_traits.customer_events'::regclass AND attnum > 0 ORDER BY attnum;
SELECT count(*) AS events, count(customer_entity_id) AS stitched FROM cdp_traits.customer_events;

SELECT cdp_traits.detach_events();
SELECT cdp_traits.detach_events();
-- detach keeps the view, so dropping the table needs CASCADE
DROP TABLE ev;
DROP TABLE ev CASCADE;
-- a dropped events table counts as not attached
SELECT cdp_traits.restitch();
-- an enum is fine
CREATE TYPE ev_code AS ENUM ('e1', 'e2', 'e3');
CREATE TABLE enum_ids (id ev_code PRIMARY KEY, source_id text, type text, version text,
                       event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('enum_ids');
INSERT INTO enum_ids VALUES ('e1', 'web', 'view', '1', now(), '{"email": "a@x"}'),
                            ('e2', 'web', 'view', '1', now(), '{"email": "a@x"}');
DELETE FROM enum_ids WHERE id = 'e2';
SELECT count(*) AS events, count(DISTINCT customer_entity_id) AS entities FROM cdp_traits.customer_events;
SELECT cdp_traits.detach_events();
-- ids are made of the type recorded at attach: a record that no longer
-- matches the column (here: made to say a domain) is refused like any other
-- change of the columns, rather than run the domain's CHECK
CREATE TABLE late_ids (id text PRIMARY KEY, source_id text, type text, version text,
                       event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('late_ids');
INSERT INTO late_ids VALUES ('e1', 'web', 'view', '1', now(), '{"email": "b@x"}'),
                            ('e2', 'web', 'view', '1', now(), '{"email": "b@x"}');
UPDATE cdp_traits.events_source SET id_type = 'spied_id'::regtype;
\c -
TRUNCATE spy_calls;
DELETE FROM late_ids WHERE id = 'e2';
SELECT count(*) AS spy_calls FROM spy_calls;
SELECT count(*) AS events_still_stitched FROM cdp_traits.event_entities;
SELECT cdp_traits.detach_events();
DROP TABLE late_ids, enum_ids CASCADE;
DROP TABLE domain_ids, composite_ids, array_ids, range_ids, spy_calls;
DROP TYPE spied_pair, ev_code;
DROP DOMAIN spied_id;
DROP FUNCTION spy(text);
TRUNCATE cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities CASCADE;
DROP TABLE ev2, no_payload, bad_types, no_equality;
DROP VIEW not_a_table;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;

-- An enum owned by a role that is not a superuser: its owner could add a
-- cast to text, which stitching would run as the extension's owner.
CREATE ROLE cdp_enum_owner;
CREATE TYPE their_code AS ENUM ('e1', 'e2');
ALTER TYPE their_code OWNER TO cdp_enum_owner;
CREATE TABLE their_ids (id their_code PRIMARY KEY, source_id text, type text, version text,
                        event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('their_ids');
SELECT count(*) AS nothing_recorded FROM cdp_traits.events_source;
-- The columns read cannot change once attached: whoever owns the table
-- could rename source_id and add a column of that name of a type of their
-- own, with a cast to text that stitching and the calculation would run.
-- The change is refused; made anyway (the event trigger disabled), nothing
-- reads the table until it is changed back.  Adding other columns is fine.
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''email''');
CREATE TABLE swap_ev (id text PRIMARY KEY, source_id text, type text, version text,
                      event_time timestamptz, payload jsonb);
SELECT cdp_traits.attach_events('swap_ev');
ALTER TABLE swap_ev ADD COLUMN note text;
ALTER TABLE swap_ev RENAME COLUMN source_id TO source_old;
ALTER TABLE swap_ev RENAME COLUMN payload TO body;
ALTER EVENT TRIGGER cdp_traits_new_partition DISABLE;
ALTER EVENT TRIGGER cdp_traits_ddl_end DISABLE;
ALTER TABLE swap_ev RENAME COLUMN source_id TO source_old;
ALTER TABLE swap_ev ADD COLUMN source_id their_code;
ALTER EVENT TRIGGER cdp_traits_new_partition ENABLE ALWAYS;
ALTER EVENT TRIGGER cdp_traits_ddl_end ENABLE ALWAYS;
INSERT INTO swap_ev (id, source_id, type, version, event_time, payload)
VALUES ('s1', 'e1', 'view', '1', now(), '{"email": "s@x"}');
SELECT * FROM cdp_traits.verify_stitching();
SELECT count(*) FROM cdp_traits._event_id_of_key('k');
-- (the way back: detach, change, attach)
ALTER TABLE swap_ev DROP COLUMN source_id;
SELECT cdp_traits.detach_events();
ALTER TABLE swap_ev DROP COLUMN source_id;
ALTER TABLE swap_ev RENAME COLUMN source_old TO source_id;
DROP VIEW cdp_traits.customer_events;
SELECT cdp_traits.attach_events('swap_ev');
INSERT INTO swap_ev (id, source_id, type, version, event_time, payload)
VALUES ('s1', 'web', 'view', '1', now(), '{"email": "s@x"}');
SELECT count(*) AS stitched FROM cdp_traits.event_entities;
SELECT cdp_traits.detach_events();
DROP TABLE swap_ev, their_ids CASCADE;
DROP TYPE their_code;
DROP ROLE cdp_enum_owner;
TRUNCATE cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities CASCADE;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;

-- The event trigger that watches CREATE/ALTER TABLE reads the command's
-- details as the caller, under the caller's search_path: an operator that
-- whoever may create objects in a schema on it put there (an exact match
-- for oid = regclass, which pg_catalog lacks) is not picked up.
CREATE TABLE op_calls (who name);
CREATE FUNCTION public.spy_eq(oid, regclass) RETURNS boolean LANGUAGE sql
  AS $$ INSERT INTO op_calls VALUES (current_user) RETURNING $1 = $2::oid $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.spy_eq);
CREATE TABLE after_op (x int);
ALTER TABLE after_op ADD COLUMN y int;
SELECT count(*) AS operator_calls FROM op_calls;
DROP TABLE after_op;
DROP OPERATOR public.= (oid, regclass);
DROP FUNCTION public.spy_eq(oid, regclass);
DROP TABLE op_calls;

-- Events without an id: stitching records events by id, so the triggers
-- reject an event whose id is NULL (insert, or update to NULL); rows without
-- an id already in the table (loaded while detached) are left unstitched by
-- attach and restitch, with a warning, and can be deleted, truncated or
-- given an id.  A NULL id is never confused with the id ''.
CREATE TABLE noid (id text, source_id text, type text, version text,
                   event_time timestamptz, payload jsonb);
INSERT INTO noid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "n@x"}'),
                        ('', 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', 'payload->>''email''');
SELECT cdp_traits.attach_events('noid');
SELECT quote_nullable(id) AS id, customer_entity_id IS NOT NULL AS stitched
  FROM cdp_traits.customer_events ORDER BY id NULLS FIRST;
SELECT quote_literal(event_id) AS stored_key FROM cdp_traits.event_entities;
INSERT INTO noid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
INSERT INTO noid VALUES ('a', 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}'),
                        (NULL, 'web', 'x', '1', '2025-01-01', '{}');
UPDATE noid SET id = NULL WHERE id = '';
UPDATE noid SET payload = '{"email": "m@x"}' WHERE id IS NULL;
SELECT count(*) AS events FROM noid;
SELECT * FROM cdp_traits.verify_stitching();
SELECT cdp_traits.restitch();
-- deleting events without an id (the crash of the past), alone and with others
INSERT INTO noid VALUES ('b', 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
ALTER TABLE noid DISABLE TRIGGER cdp_traits_stitch_insert;
INSERT INTO noid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
ALTER TABLE noid ENABLE TRIGGER cdp_traits_stitch_insert;
DELETE FROM noid WHERE id IS NULL AND payload->>'email' = 'n@x';
DELETE FROM noid WHERE id IS NULL OR id = 'b';
SELECT quote_nullable(id) AS id, customer_entity_id IS NOT NULL AS stitched
  FROM cdp_traits.customer_events ORDER BY id NULLS FIRST;
SELECT * FROM cdp_traits.verify_stitching();
-- an event given an id is stitched at once
ALTER TABLE noid DISABLE TRIGGER cdp_traits_stitch_insert;
INSERT INTO noid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
ALTER TABLE noid ENABLE TRIGGER cdp_traits_stitch_insert;
UPDATE noid SET id = 'c' WHERE id IS NULL;
SELECT quote_nullable(id) AS id, count(*) OVER (PARTITION BY customer_entity_id) AS entity_size
  FROM cdp_traits.customer_events ORDER BY id;
SELECT * FROM cdp_traits.verify_stitching();
ALTER TABLE noid DISABLE TRIGGER cdp_traits_stitch_insert;
INSERT INTO noid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "e@x"}');
ALTER TABLE noid ENABLE TRIGGER cdp_traits_stitch_insert;
TRUNCATE noid;
SELECT count(*) AS stitched_events FROM cdp_traits.event_entities;
SELECT cdp_traits.detach_events();
DROP TABLE noid CASCADE;
-- the same with uuid ids
CREATE TABLE noid_uuid (id uuid, source_id text, type text, version text,
                        event_time timestamptz, payload jsonb);
INSERT INTO noid_uuid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "u@x"}');
SELECT cdp_traits.attach_events('noid_uuid');
INSERT INTO noid_uuid VALUES (NULL, 'web', 'x', '1', '2025-01-01', '{"email": "u@x"}');
DELETE FROM noid_uuid;
SELECT count(*) AS stitched_events FROM cdp_traits.event_entities;
SELECT cdp_traits.detach_events();
DROP TABLE noid_uuid CASCADE;
TRUNCATE cdp_traits.event_entities, cdp_traits.matching, cdp_traits.customer_entities CASCADE;
DELETE FROM cdp_traits.stitching_rules;
DELETE FROM cdp_traits.events_source;
