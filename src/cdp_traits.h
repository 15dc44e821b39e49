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

extern void cdp_define_gucs(void);

#endif							/* CDP_TRAITS_H */
