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

/*
 * field4 of the extension's advisory lock tags ("objsubid" in pg_locks):
 * 'CD' + kind, apart from the 1 and 2 that SQL's pg_advisory_lock functions
 * make, so no role can take or hold these locks from SQL.  One list, so that
 * no two locks share a key space.
 */
#define CDP_LOCK_STITCH_GLOBAL	0x4344	/* 17220: stitching, whole passes (stitch_apply.c) */
#define CDP_LOCK_STITCH_IDENT	0x4345	/* 17221: ... identifiers */
#define CDP_LOCK_STITCH_ENTITY	0x4346	/* 17222: ... entities */
#define CDP_LOCK_STITCH_EVENT	0x4347	/* 17223: ... event ids */
#define CDP_LOCK_WORKER			0x4348	/* 17224: a job worker's database (worker.c) */
#define CDP_LOCK_SEGMENTS		0x4349	/* 17225: segments, toggle log (segment_trigger.c) */
#define CDP_LOCK_SEGMENT_KEYS	0x434A	/* 17226: segment key stripes (segment_trigger.c) */
#define CDP_LOCK_CALCULATION	0x434B	/* 17227: attribute calculation (calc_lock.c) */

/* guc.c: configuration variables (see README "Configuration") */
extern int	cdp_recalculate_after;	/* seconds */
extern int	cdp_context_ttl;		/* seconds */
extern int	cdp_context_timeout;	/* milliseconds */
extern int	cdp_attribute_timeout;	/* milliseconds */
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

/*
 * pg_restore's sessions (its default application_name): the worker skips a
 * database while one is connected, and the trigger on segment_events takes
 * what a superuser's pg_restore loads for rows of the dump (README "Backup
 * and restore").
 */
#define CDP_RESTORE_APPNAME	"pg_restore"

extern bool cdp_loaded_by_restore(void);

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

/* plan_estimates.c: the planner's view of the extension's tables */
extern void cdp_plan_estimates_init(void);

#endif							/* CDP_TRAITS_H */
