-- Version of the loaded library, to check that it matches the SQL objects.
CREATE FUNCTION cdp_traits.version() RETURNS text
LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_traits_version';
COMMENT ON FUNCTION cdp_traits.version() IS 'version of the cdp_traits library';

-- The value of a cdp_traits.* setting.  The PL/pgSQL functions read their
-- settings through this C function, not current_setting(): calling it loads
-- the library, which defines the settings (without shared_preload_libraries
-- they do not exist in a session before that).
CREATE FUNCTION cdp_traits._setting(name text) RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'cdp_setting';
COMMENT ON FUNCTION cdp_traits._setting(text) IS
	'internal: current_setting() of a cdp_traits.* setting, the library loaded first';
