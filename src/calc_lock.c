/*-------------------------------------------------------------------------
 *
 * calc_lock.c
 *		The lock that lets one attribute calculation run at a time per
 *		database.
 *
 * calculate_attributes took pg_advisory_xact_lock(1129601108, 1), a lock any
 * role that can connect may take too: holding it stalled every calculation,
 * the background worker's included.  Like the extension's other locks, this
 * one is an advisory lock in a key space of its own (cdp_traits.h), field4
 * ("objsubid" in pg_locks) 17227, which SQL's pg_advisory_lock functions
 * (field4 1 or 2) cannot name.  classid is 'CALC', objid 0.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lock.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_calculation_lock);

#define CALCULATION_LOCK		0x43414C43	/* 'CALC' */

/*
 * cdp_calculation_lock
 *		SQL: _calculation_lock() RETURNS void.  Wait for the calculation lock
 *		and hold it until the end of the transaction.
 */
Datum
cdp_calculation_lock(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, CALCULATION_LOCK, 0, CDP_LOCK_CALCULATION);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}
