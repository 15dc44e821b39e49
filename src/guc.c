/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Configuration variables of cdp_traits, all under the reserved
 *		prefix "cdp_traits.".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "cdp_traits.h"

int			cdp_recalculate_after = 48 * 3600;
int			cdp_context_ttl = 24 * 3600;
int			cdp_context_timeout = 5 * 60 * 1000;
int			cdp_attribute_timeout = 10 * 60 * 1000;
char	   *cdp_worker_databases = NULL;
int			cdp_naptime = 60;
bool		cdp_worker_enabled = true;
char	   *cdp_worker_role = NULL;
int			cdp_job_runs_retention = 7 * 24 * 3600;
int			cdp_job_timeout = 30 * 60 * 1000;
int			cdp_max_identifier_locks = 512;
int			cdp_max_segment_locks = 512;
int			cdp_state_min_events = 20;

PG_FUNCTION_INFO_V1(cdp_setting);

/*
 * cdp_define_gucs
 *		Register every cdp_traits.* variable and reserve the prefix, so that a
 *		misspelt setting is reported instead of silently ignored.
 */
void
cdp_define_gucs(void)
{
	DefineCustomIntVariable("cdp_traits.recalculate_after",
							"Age after which an entity's attributes are recalculated even if nothing changed.",
							"calculate_attributes() recalculates entities whose attributes are older than this, "
							"so that time-dependent definitions stay current.",
							&cdp_recalculate_after,
							48 * 3600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.context_ttl",
							"Age after which a context value is refreshed by its query.",
							NULL,
							&cdp_context_ttl,
							24 * 3600, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.context_timeout",
							"Time limit of each context query (0 = none).",
							"A context query that runs longer is canceled and recorded as its key's error; "
							"the other keys are still refreshed.",
							&cdp_context_timeout,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.attribute_timeout",
							"Time limit of each custom or external attribute's query (0 = none).",
							"A query that runs longer is canceled and recorded as its attribute's error; "
							"the other attributes are still calculated.",
							&cdp_attribute_timeout,
							10 * 60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * The worker's databases are fixed at server start.  A server-start
	 * setting can only be defined while preloading; loaded later (no
	 * worker then) the setting is merely shown.
	 */
	DefineCustomStringVariable("cdp_traits.database",
							   "Databases the background worker runs jobs in (comma-separated).",
							   "Takes effect at server start; the library must be in shared_preload_libraries.",
							   &cdp_worker_databases,
							   "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.naptime",
							"Time the background worker sleeps between two job cycles.",
							NULL,
							&cdp_naptime,
							60, 1, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.state_min_events",
							"Events from which an entity's attribute states are stored (0: none).",
							"A small calculation then reads only the events such an entity got since; "
							"see cdp_traits.entity_states.",
							&cdp_state_min_events,
							20, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("cdp_traits.enabled",
							 "Whether the background worker runs jobs.",
							 NULL,
							 &cdp_worker_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("cdp_traits.role",
							   "Role the background worker runs jobs as.",
							   "Empty means the owner of the extension in each database.",
							   &cdp_worker_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.job_runs_retention",
							"Age after which rows of cdp_traits.job_runs are deleted.",
							"0 keeps them all.",
							&cdp_job_runs_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.job_timeout",
							"Statement timeout applied to each job the worker or run_jobs() runs (0 = none).",
							NULL,
							&cdp_job_timeout,
							30 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.max_identifier_locks",
							"Largest stitching batch locked identifier by identifier.",
							"A batch of events with more distinct identifiers than this takes one "
							"exclusive stitching lock instead, so that bulk loads do not fill the lock table.",
							&cdp_max_identifier_locks,
							512, 0, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("cdp_traits.max_segment_locks",
							"Largest batch of segmentation events locked key by key.",
							"A statement inserting more segmentation events than this takes one "
							"exclusive segments lock instead of a lock per (vendor, segment, user).",
							&cdp_max_segment_locks,
							512, 0, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("cdp_traits");
}

/*
 * cdp_setting
 *		SQL-callable: the current value of a cdp_traits.* setting, as SHOW
 *		gives it.
 *
 * The extension's PL/pgSQL functions read their settings through this
 * instead of current_setting(): without shared_preload_libraries, the
 * settings only exist in a session once the library is loaded (_PG_init
 * defines them), and a PL/pgSQL function may run before any C function of
 * the extension has.  Calling this one loads the library first, so the
 * value is the one the session has (a SET made before the load included)
 * or the default defined above: the defaults live only here.
 */
Datum
cdp_setting(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (strncmp(name, "cdp_traits.", strlen("cdp_traits.")) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a setting of cdp_traits", name),
				 errhint("Use current_setting() for other settings.")));

	PG_RETURN_TEXT_P(cstring_to_text(GetConfigOptionByName(name, NULL, false)));
}
