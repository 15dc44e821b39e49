-- CREATE / DROP / re-CREATE EXTENSION leaves no residue.
-- (pg_regress created the extension with --load-extension.)
SELECT extname, extversion, extrelocatable, n.nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'cdp_traits';
SELECT cdp_traits.version() = (SELECT extversion FROM pg_extension WHERE extname = 'cdp_traits') AS library_matches_sql;

-- A census of the catalogs, to compare before and after.
CREATE FUNCTION pg_temp.object_census() RETURNS TABLE(what text, n bigint)
LANGUAGE sql AS $$
  SELECT 'namespaces', count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
  UNION ALL SELECT 'relations', count(*) FROM pg_class WHERE relpersistence <> 't'
  UNION ALL SELECT 'functions', count(*) FROM pg_proc
  UNION ALL SELECT 'types', count(*) FROM pg_type
  UNION ALL SELECT 'triggers', count(*) FROM pg_trigger
  UNION ALL SELECT 'event triggers', count(*) FROM pg_event_trigger
  UNION ALL SELECT 'operators', count(*) FROM pg_operator
  UNION ALL SELECT 'casts', count(*) FROM pg_cast
  UNION ALL SELECT 'roles', count(*) FROM pg_roles
  UNION ALL SELECT 'dependencies', count(*) FROM pg_depend
$$;

DROP EXTENSION cdp_traits;
CREATE TEMP TABLE census_dropped AS SELECT * FROM pg_temp.object_census();
SELECT count(*) AS schema_left FROM pg_namespace WHERE nspname = 'cdp_traits';
SELECT count(*) AS functions_left FROM pg_proc WHERE prosrc LIKE 'cdp_traits%' OR probin LIKE '%cdp_traits%';

-- Create again, drop again: the database is exactly as it was.
CREATE EXTENSION cdp_traits;
SELECT count(*) > 0 AS has_objects FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cdp_traits');
DROP EXTENSION cdp_traits;
SELECT c.what, c.n - d.n AS difference
  FROM pg_temp.object_census() c JOIN census_dropped d USING (what)
 WHERE c.n <> d.n;

-- Leave it installed for the following tests.
CREATE EXTENSION cdp_traits;
-- Installing into another schema is refused: the extension is not relocatable.
DROP EXTENSION cdp_traits;
CREATE SCHEMA elsewhere;
CREATE EXTENSION cdp_traits SCHEMA elsewhere;
DROP SCHEMA elsewhere;
-- The schema cdp_traits is not dropped with the extension, whoever created it:
-- a dependency of the schema on the extension is a loop pg_dump cannot order
-- (test/t/030_dump_restore.pl).  An empty schema is all that is left.
SELECT count(*) AS objects_left FROM pg_class WHERE relnamespace = 'cdp_traits'::regnamespace;
CREATE EXTENSION cdp_traits;
DROP EXTENSION cdp_traits;
SELECT count(*) AS user_schema_kept FROM pg_namespace WHERE nspname = 'cdp_traits';
DROP SCHEMA cdp_traits;
-- No helper is left behind.
CREATE EXTENSION cdp_traits;
SELECT count(*) AS helper_left FROM pg_proc WHERE proname = 'claim_schema';
