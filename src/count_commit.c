/*-------------------------------------------------------------------------
 *
 * count_commit.c
 *		Apply the counts' changes of a stitching transaction when it commits.
 *
 * attribute_counts and attribute_value_counts are rows every writer shares.
 * A stitching statement that removes entities with values records what that
 * does to the counts as a row of pending_count_changes (an insert: nobody
 * waits), and this callback sums the transaction's rows into the counts just
 * before the transaction commits (XACT_EVENT_PRE_COMMIT), when it waits for
 * nothing but other committers' count rows, which all take them in key
 * order.  (A deferred trigger would do the same, but stitching runs as a
 * security-restricted operation, where PostgreSQL refuses to queue one.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/snapmgr.h"

#include "cdp_traits.h"
#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_apply_counts_at_commit);

static bool counts_callback_registered = false;
static bool counts_pending = false;

/*
 * counts_apply
 *		Run _pending_counts_apply() as the extension owner.
 */
static void
counts_apply(void)
{
	CdpExecState state;

	if (!OidIsValid(get_extension_oid(CDP_EXTENSION_NAME, true)))
		return;					/* dropped in this transaction: nothing to count */
	PushActiveSnapshot(GetTransactionSnapshot());
	cdp_exec_begin(&state);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT cdp_traits._pending_counts_apply()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not apply the pending changes of attribute_counts");
	SPI_finish();
	cdp_exec_end(&state);
	PopActiveSnapshot();
}

/*
 * counts_xact_callback
 *		Before commit (or PREPARE TRANSACTION), fold the transaction's pending
 *		count changes in; at the end of any transaction, forget the flag.
 */
static void
counts_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (counts_pending)
			{
				counts_pending = false;
				counts_apply();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			counts_pending = false;
			break;
		default:
			break;
	}
}

/*
 * cdp_apply_counts_at_commit
 *		SQL-callable _apply_counts_at_commit() RETURNS void: the transaction
 *		wrote pending_count_changes; apply them before it commits.  (A
 *		subtransaction rolled back takes its rows with it: the callback then
 *		finds less, or nothing.)
 */
Datum
cdp_apply_counts_at_commit(PG_FUNCTION_ARGS)
{
	if (!counts_callback_registered)
	{
		RegisterXactCallback(counts_xact_callback, NULL);
		counts_callback_registered = true;
	}
	counts_pending = true;
	PG_RETURN_VOID();
}
