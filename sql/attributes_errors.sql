-- Attribute definitions are validated when written (SPEC section 4): each bad
-- definition is rejected with an error naming the attribute; nothing is stored.
\set SHOW_CONTEXT never
-- a fresh extension: no state from earlier tests
SET client_min_messages = warning;
DROP EXTENSION cdp_traits CASCADE;
CREATE EXTENSION cdp_traits;
DROP TABLE IF EXISTS ev CASCADE;
RESET client_min_messages;
SET client_min_messages = warning;
-- without an attached events table, definitions are checked as far as possible
INSERT INTO cdp_traits.attributes VALUES ('later', '{"type": "max", "value": "payload->>''later''"}');
INSERT INTO cdp_traits.attributes VALUES ('broken', '{"type": "max", "value": "payload->>"}');
SELECT id FROM cdp_traits.attributes ORDER BY id;
DELETE FROM cdp_traits.attributes;

CREATE TABLE ev (id bigint PRIMARY KEY, source_id text, type text, version text,
                 event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
RESET client_min_messages;

-- shape
INSERT INTO cdp_traits.attributes VALUES ('a', '"most_frequent"');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"value": "payload->>''x''"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "median", "value": "payload->>''x''"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": ""}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": 42}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "sources": "web"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "types": [1, 2]}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "data_type": "money"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "sum", "value": "payload->>''x''", "data_type": "text"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "history": "yes"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": ""}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "audience"}');
INSERT INTO cdp_traits.attributes VALUES ('', '{"type": "max", "value": "payload->>''x''"}');
INSERT INTO cdp_traits.attributes VALUES (repeat('x', 64), '{"type": "max", "value": "payload->>''x''"}');
-- an id names a column of the pivot, and a column name has at most 63 bytes:
-- 40 two-byte characters are too long, and two such ids would share a column
INSERT INTO cdp_traits.attributes VALUES (repeat('é', 40), '{"type": "max", "value": "payload->>''x''"}');
INSERT INTO cdp_traits.attributes VALUES (repeat('é', 32), '{"type": "max", "value": "payload->>''x''"}');
-- the pivot's key column is not an attribute
INSERT INTO cdp_traits.attributes VALUES ('customer_entity_id', '{"type": "max", "value": "payload->>''x''"}');
-- 63 bytes (31 two-byte characters and one more) is a column name as it is
INSERT INTO cdp_traits.attributes VALUES (repeat('é', 31) || 'x', '{"type": "max", "value": "payload->>''x''"}'),
  ('Customer_Entity_Id', '{"type": "max", "value": "payload->>''x''"}');
SELECT a.attname, a.attname = ANY (ARRAY[repeat('é', 31) || 'x', 'Customer_Entity_Id']) AS named_by_id
  FROM pg_attribute a
 WHERE a.attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND a.attnum > 0
 ORDER BY a.attnum;
-- renaming to such an id is checked too
UPDATE cdp_traits.attributes SET id = id || 'y' WHERE id = repeat('é', 31) || 'x';
UPDATE cdp_traits.attributes SET id = 'customer_entity_id' WHERE id = 'Customer_Entity_Id';
SELECT id, octet_length(id) FROM cdp_traits.attributes ORDER BY id;
DELETE FROM cdp_traits.attributes;

-- SQL that does not parse, is not one expression, or escapes its place
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x'', payload->>''y''"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "1) AS value FROM ev; DROP TABLE ev; --"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "filter": "type = ''a'' ORDER BY 1"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "outer_value": "value FROM ev"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT 1 AS value; DROP TABLE ev"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "DELETE FROM ev RETURNING 1 AS value"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "WITH d AS (DELETE FROM ev RETURNING id) SELECT count(*) AS value FROM d"}');
-- a query pasted with its semicolon (it is read as a subquery): said so, not
-- "syntax error at or near ;"
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT count(*) AS value FROM base;"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": "SELECT 1 AS customer_entity_id, 2 AS value ; -- model"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "audience", "condition": "x > 1; DROP TABLE ev"}');

-- SQL that does not type-check against the events
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "no_such_column"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->>''x''", "filter": "payload->>''x''"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload->''x''", "outer_filter": "value"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "no_such_function(payload)"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "payload", "outer_value": "(value->>1) + 1"}');
-- custom queries return exactly one column named value
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT count(*) FROM base"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT count(*) AS value, 1 AS other FROM base"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT payload->>''nope'' AS value FROM base WHERE nothing"}');
-- base has the events table's own column types (ev.id is a bigint): a query
-- doing arithmetic on the id is accepted, one comparing it with a time is not
INSERT INTO cdp_traits.attributes VALUES ('max_id', '{"type": "custom", "query": "SELECT max(id) + 1 AS value FROM base"}');
INSERT INTO cdp_traits.attributes VALUES ('late_ids', '{"type": "custom", "query": "SELECT count(*) AS value FROM base WHERE id > 100"}');
SELECT id FROM cdp_traits.attributes ORDER BY id;
DELETE FROM cdp_traits.attributes;
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "custom", "query": "SELECT count(*) AS value FROM base WHERE id = now()"}');
-- external queries give customer_entity_id and value
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": "SELECT 1 AS value"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": "SELECT 1 AS customer_entity_id, 2 AS value"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": "SELECT * FROM no_such_table"}');
-- a table or function of the user's not schema-qualified: the hint says why
-- it is not found (definitions run with search_path pg_catalog, cdp_traits)
CREATE TABLE public.ltv_unqualified (customer_entity_id uuid, value numeric);
CREATE FUNCTION public.my_score(jsonb) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT 1';
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "external", "query": "SELECT customer_entity_id, value FROM ltv_unqualified"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "my_score(payload)"}');
INSERT INTO cdp_traits.attributes VALUES ('a', '{"type": "max", "value": "public.my_score(payload)"}');
DELETE FROM cdp_traits.attributes WHERE id = 'a';
DROP TABLE public.ltv_unqualified;
DROP FUNCTION public.my_score(jsonb);

-- audiences: conditions over the pivoted attributes, without cycles
INSERT INTO cdp_traits.attributes VALUES ('total', '{"type": "max", "value": "payload->>''total''"}');
INSERT INTO cdp_traits.attributes VALUES ('aud', '{"type": "audience", "condition": "no_such_attribute > 1"}');
INSERT INTO cdp_traits.attributes VALUES ('aud', '{"type": "audience", "condition": "total"}');
-- a custom attribute without data_type is a jsonb column: the hint says what to do
INSERT INTO cdp_traits.attributes VALUES ('n_events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}');
INSERT INTO cdp_traits.attributes VALUES ('aud', '{"type": "audience", "condition": "n_events > 1"}');
INSERT INTO cdp_traits.attributes VALUES ('aud', '{"type": "audience", "condition": "(n_events)::numeric > 1"}');
DELETE FROM cdp_traits.attributes WHERE id IN ('aud', 'n_events');
INSERT INTO cdp_traits.attributes VALUES ('aud', '{"type": "audience", "condition": "aud AND total > ''1''"}');
INSERT INTO cdp_traits.attributes VALUES
  ('aud1', '{"type": "audience", "condition": "aud2 OR total > ''1''"}'),
  ('aud2', '{"type": "audience", "condition": "aud1"}');
INSERT INTO cdp_traits.attributes VALUES ('aud1', '{"type": "audience", "condition": "total > ''1''"}');
-- changing a definition into a cycle is rejected too, and keeps the old one
INSERT INTO cdp_traits.attributes VALUES ('aud2', '{"type": "audience", "condition": "aud1"}');
UPDATE cdp_traits.attributes SET definition = '{"type": "audience", "condition": "aud2"}' WHERE id = 'aud1';
SELECT id, definition, version FROM cdp_traits.attributes ORDER BY id;
-- an attribute an audience uses cannot be dropped from under it
DELETE FROM cdp_traits.attributes WHERE id = 'total';

-- nothing of the rejected definitions was stored
SELECT count(*) FROM cdp_traits.attributes WHERE id NOT IN ('total', 'aud1', 'aud2');
SELECT attname FROM pg_attribute WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass
   AND attnum > 0 ORDER BY attnum;


-- a view over the pivot keeps an attribute from being removed (its column
-- would go), and the error names it with its owner: any role may create
-- one, even without the right to read the pivot
CREATE ROLE cdp_pivot_viewer;
CREATE SCHEMA pivot_space AUTHORIZATION cdp_pivot_viewer;
SET ROLE cdp_pivot_viewer;
CREATE VIEW pivot_space.mine AS SELECT * FROM cdp_traits.pivoted_customer_attributes;
RESET ROLE;
DELETE FROM cdp_traits.attributes WHERE id = 'aud2';
SELECT count(*) AS kept FROM cdp_traits.attributes WHERE id = 'aud2';
DROP SCHEMA pivot_space CASCADE;
DROP ROLE cdp_pivot_viewer;
