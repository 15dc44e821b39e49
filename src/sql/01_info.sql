-- Version of the loaded library, to check that it matches the SQL objects.
CREATE FUNCTION cdp_traits.version() RETURNS text
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_traits_version';
COMMENT ON FUNCTION cdp_traits.version() IS 'version of the cdp_traits library';
