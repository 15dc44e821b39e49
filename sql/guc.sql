-- Configuration variables (SPEC sections 4, 5 and 7) exist with their defaults.
SELECT name, setting, unit, context, boot_val
  FROM pg_settings WHERE name LIKE 'cdp\_traits.%' ORDER BY name;
-- Interval-valued settings read back as intervals.
SELECT current_setting('cdp_traits.recalculate_after')::interval AS recalculate_after,
       current_setting('cdp_traits.context_ttl')::interval AS context_ttl,
       current_setting('cdp_traits.naptime')::interval AS naptime;
SET cdp_traits.recalculate_after = '90min';
SHOW cdp_traits.recalculate_after;
RESET cdp_traits.recalculate_after;
-- Bad values and unknown names under the reserved prefix are errors.
SET cdp_traits.recalculate_after = 'soon';
SET cdp_traits.recalculate_after = '-1s';
SET cdp_traits.no_such_setting = 1;
-- Server-level settings cannot be changed in a session.
SET cdp_traits.naptime = '5s';
SET cdp_traits.database = 'other';
