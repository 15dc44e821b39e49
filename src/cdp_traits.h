/*-------------------------------------------------------------------------
 *
 * cdp_traits.h
 *		Declarations shared between the source files of cdp_traits.
 *
 * Only what more than one file needs lives here; everything else is static
 * in the file that owns it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_TRAITS_H
#define CDP_TRAITS_H

#include "postgres.h"

/* Name of the extension, its schema, and the prefix of its GUCs. */
#define CDP_EXTENSION_NAME	"cdp_traits"
#define CDP_SCHEMA_NAME		"cdp_traits"

/* guc.c: configuration variables (see README "Configuration") */
extern int	cdp_recalculate_after;	/* seconds */
extern int	cdp_context_ttl;		/* seconds */
extern char *cdp_worker_databases;
extern int	cdp_naptime;			/* seconds */
extern bool cdp_worker_enabled;
extern char *cdp_worker_role;
extern int	cdp_job_runs_retention;	/* seconds */
extern int	cdp_job_timeout;		/* milliseconds */
extern int	cdp_max_identifier_locks;
extern int	cdp_max_segment_locks;
extern int	cdp_state_min_events;

extern void cdp_define_gucs(void);

/* worker.c: the background worker (see README "Background worker") */
#define CDP_WORKER_APPNAME	"cdp_traits worker"

extern void cdp_worker_init(void);
extern PGDLLEXPORT void cdp_launcher_main(Datum main_arg);
extern PGDLLEXPORT void cdp_worker_main(Datum main_arg);

/* jsonb_object.c */
struct JsonbValue;
extern void cdp_jsonb_as_value(Datum jsonb, struct JsonbValue *v);
extern bool cdp_jsonb_values_equal(struct JsonbValue *a, struct JsonbValue *b);

/* jobs.c: the jobs of a cycle and their record in cdp_traits.job_runs */
extern int	cdp_job_count(void);
extern void cdp_job_run_in_worker(int job);
extern const char *cdp_jobs_installed(void);
extern int	cdp_jobs_mark_interrupted(void);

#endif							/* CDP_TRAITS_H */
