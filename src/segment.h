/*-------------------------------------------------------------------------
 *
 * segment.h
 *		Declarations shared by the segments source files (SPEC section 6).
 *
 * segment_time.c     the cdp_traits.rfc3339 type: RFC 3339 in, UTC out
 * segment_trigger.c  the statement trigger on segment_events
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_SEGMENT_H
#define CDP_SEGMENT_H

#include "datatype/timestamp.h"
#include "utils/datetime.h"

/* longest text cdp_format_rfc3339 writes (without the terminator) */
#define RFC3339_MAXLEN	MAXDATELEN

extern int	cdp_format_rfc3339(TimestampTz t, char *buf);

#endif							/* CDP_SEGMENT_H */
