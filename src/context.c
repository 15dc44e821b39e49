/*-------------------------------------------------------------------------
 *
 * context.c
 *		A time limit for each context query (cdp_traits.context_timeout),
 *		and for each custom or external attribute's query
 *		(cdp_traits.attribute_timeout).
 *
 * refresh_context() runs the query of every stale key in a block of its
 * own and records a failing one on its key.  A query that only runs too
 * long is a failure of that key as well: without a limit of its own it ran
 * until the caller's statement timeout (the worker's job_timeout) canceled
 * the whole refresh, and calculate_attributes() with it, which refreshes
 * stale context first, in every cycle, and the key never said why.
 *
 * statement_timeout cannot serve: its timer is armed once per client
 * statement, so setting it inside a function bounds nothing.  The timer
 * here is one of the process's own timeouts (utils/timeout.h).  When it
 * fires it requests a query cancel, as a statement timeout does; the
 * refresh's exception block catches query_canceled, asks _context_timer
 * whether this timer caused it, records the key's error and goes on, and
 * re-raises any other cancel (a user's, or the job's own timeout).
 *
 * calculate_attributes() does the same around the statement of each custom
 * or external attribute (user SQL: a dbt model's view, a query waiting for
 * a lock that a dbt transaction holds): one that runs too long fails alone,
 * as an attribute whose query raises an error does, and the others are
 * still calculated and written, where the job's timeout canceled the whole
 * run, every cycle.  The two never run nested, so they share one timer.
 *
 * The timer is never armed past the caller's statement timeout, so that
 * of two limits the caller's fires alone; and it is disarmed whenever the
 * (sub)transaction it was armed in ends, so a cancel it requests can only
 * reach the query it was armed for.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_context_timer);
PG_FUNCTION_INFO_V1(cdp_attribute_timer);

/* this process's timeout id, registered on first use */
static TimeoutId context_timeout_id;
static bool context_timeout_registered = false;

/* whether the timer is armed, and at which transaction nesting level */
static bool context_timer_armed = false;
static int	context_timer_level = 0;

/* set by the handler: the timer fired since it was last armed */
static volatile sig_atomic_t context_timer_fired = false;

/*
 * context_timeout_handler
 *		The timer expired: note it and request a query cancel (the flags a
 *		SIGINT sets; ProcessInterrupts then raises query_canceled).
 */
static void
context_timeout_handler(void)
{
	context_timer_fired = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * context_timer_disarm
 *		Stop the timer if it is armed.
 */
static void
context_timer_disarm(void)
{
	if (context_timer_armed)
	{
		disable_timeout(context_timeout_id, false);
		context_timer_armed = false;
	}
}

/*
 * context_xact_callback
 *		The transaction ends: nothing may be left armed.
 */
static void
context_xact_callback(XactEvent event, void *arg)
{
	context_timer_disarm();
}

/*
 * context_subxact_callback
 *		A subtransaction ends: disarm if the timer was armed in it (or in one
 *		nested in it).  The exception block around a context query is such
 *		a subtransaction, so an error that leaves the block, caught there or
 *		further out, leaves no timer behind.
 */
static void
context_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if ((event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB) &&
		context_timer_armed &&
		GetCurrentTransactionNestLevel() <= context_timer_level)
		context_timer_disarm();
}

/*
 * query_timer
 *		Arm (arm true) the timer for timeout_ms (not at all when that is 0,
 *		or when the caller's statement timeout comes first) and return
 *		whether it was armed; or disarm it (arm false) and return whether it
 *		fired, that is whether a query_canceled raised since it was armed is
 *		this timer's.  A cancel the timer requested that has not been served
 *		yet (the query ended in the meantime) is served now, so that it is
 *		raised inside the caller's block rather than in whatever runs next.
 */
static bool
query_timer(bool arm, int timeout_ms)
{
	if (!context_timeout_registered)
	{
		context_timeout_id = RegisterTimeout(USER_TIMEOUT, context_timeout_handler);
		RegisterXactCallback(context_xact_callback, NULL);
		RegisterSubXactCallback(context_subxact_callback, NULL);
		context_timeout_registered = true;
	}

	if (arm)
	{
		TimestampTz deadline;

		context_timer_disarm();
		context_timer_fired = false;
		if (timeout_ms <= 0)
			return false;
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
		if (get_timeout_active(STATEMENT_TIMEOUT) &&
			get_timeout_finish_time(STATEMENT_TIMEOUT) <= deadline)
			return false;
		enable_timeout_at(context_timeout_id, deadline);
		context_timer_armed = true;
		context_timer_level = GetCurrentTransactionNestLevel();
		return true;
	}

	context_timer_disarm();
	if (context_timer_fired)
		CHECK_FOR_INTERRUPTS();
	return context_timer_fired;
}

/*
 * cdp_context_timer
 *		SQL-callable _context_timer(arm boolean) RETURNS boolean: the timer
 *		(see query_timer) for cdp_traits.context_timeout.
 */
Datum
cdp_context_timer(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(query_timer(PG_GETARG_BOOL(0), cdp_context_timeout));
}

/*
 * cdp_attribute_timer
 *		SQL-callable _attribute_timer(arm boolean) RETURNS boolean: the timer
 *		(see query_timer) for cdp_traits.attribute_timeout.
 */
Datum
cdp_attribute_timer(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(query_timer(PG_GETARG_BOOL(0), cdp_attribute_timeout));
}
