/*
 * cdp_traits install script, assembled at build time from the files in src/sql/, in
 * name order (one file per concern).  Everything is schema-qualified so the
 * script does not depend on search_path.
 */

-- complain if the script is sourced in psql rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION cdp_traits" to load this file. \quit

COMMENT ON SCHEMA cdp_traits IS 'cdp_traits: profile stitching, traits, context and segments';

-- CREATE EXTENSION creates the schema when it does not exist yet.  The schema
-- is not tied to the extension (0.1.0 made DROP EXTENSION drop it): pg_dump
-- must create it before CREATE EXTENSION ... WITH SCHEMA cdp_traits, and any
-- dependency of the schema on the extension is a loop it cannot order.
