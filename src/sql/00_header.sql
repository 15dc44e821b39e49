/*
 * cdp_traits install script, assembled at build time from the files in src/sql/, in
 * name order (one file per concern).  Everything is schema-qualified so the
 * script does not depend on search_path.
 */

-- complain if the script is sourced in psql rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION cdp_traits" to load this file. \quit

COMMENT ON SCHEMA cdp_traits IS 'cdp_traits: profile stitching, traits, context and segments';

-- CREATE EXTENSION creates the schema when it does not exist yet; such a schema
-- is dropped again by DROP EXTENSION (a schema created by the user is kept).
CREATE FUNCTION cdp_traits.claim_schema() RETURNS boolean
LANGUAGE c AS 'MODULE_PATHNAME', 'cdp_traits_claim_schema';
SELECT cdp_traits.claim_schema();
DROP FUNCTION cdp_traits.claim_schema();
