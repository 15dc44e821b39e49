/*-------------------------------------------------------------------------
 *
 * segment_time.c
 *		The timestamp of a segmentation event (SPEC section 6): RFC 3339 text
 *		with an explicit offset, read as an instant.
 *
 * The grammar is RFC 3339's date-time, exactly:
 *
 *	 YYYY-MM-DD (T|t) hh:mm:ss [.fraction] (Z|z|(+|-)hh:mm)
 *
 * Everything else is rejected: a date alone, a missing offset (which would
 * be read in whatever time zone the session has), "+0530" or "+05",
 * PostgreSQL's own output with a space, and special words such as
 * "yesterday" or "now".  Days are checked against the month (leap years
 * included); a leap second (ss = 60) is accepted and read as the next
 * second, as PostgreSQL does.  Fractions are rounded to microseconds.
 *
 * Because the offset is always explicit, the result does not depend on any
 * setting, so the function is immutable and can compute
 * segment_events.event_time as a generated column: rows loaded with COPY
 * are checked by the same code as ingest_segment_event().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_segment_timestamp);

/*
 * digits
 *		The value of n decimal digits at s, or -1 if they are not all digits.
 */
static int
digits(const char *s, int n)
{
	int			v = 0;

	while (n-- > 0)
	{
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s++ - '0');
	}
	return v;
}

/*
 * parse_rfc3339
 *		Read s (len bytes, not terminated) as an RFC 3339 date-time; false if
 *		it is not one.
 */
static bool
parse_rfc3339(const char *s, int len, TimestampTz *result)
{
	int			year,
				mon,
				mday,
				hour,
				min,
				sec,
				usec = 0,
				offset = 0;		/* seconds east of UTC */
	int			pos;
	int64		days;

	/* YYYY-MM-DDThh:mm:ss is 19 bytes; the shortest offset is 1 more */
	if (len < 20)
		return false;
	year = digits(s, 4);
	mon = digits(s + 5, 2);
	mday = digits(s + 8, 2);
	hour = digits(s + 11, 2);
	min = digits(s + 14, 2);
	sec = digits(s + 17, 2);
	if (year < 0 || mon < 1 || mon > 12 || mday < 1 || hour < 0 || hour > 23 ||
		min < 0 || min > 59 || sec < 0 || sec > 60 ||
		s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
		s[13] != ':' || s[16] != ':')
		return false;
	if (mday > day_tab[isleap(year)][mon - 1])
		return false;

	pos = 19;
	if (s[pos] == '.')
	{
		static const int scale[6] = {100000, 10000, 1000, 100, 10, 1};
		int			start = ++pos;

		while (pos < len && s[pos] >= '0' && s[pos] <= '9')
		{
			int			i = pos - start;

			if (i < 6)
				usec += (s[pos] - '0') * scale[i];
			else if (i == 6 && s[pos] >= '5')
				usec++;			/* rounded at the seventh digit */
			pos++;
		}
		if (pos == start)
			return false;
	}

	if (pos < len && (s[pos] == 'Z' || s[pos] == 'z'))
		pos++;
	else if (pos + 6 <= len && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':')
	{
		int			oh = digits(s + pos + 1, 2);
		int			om = digits(s + pos + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return false;
		offset = (oh * MINS_PER_HOUR + om) * SECS_PER_MINUTE;
		if (s[pos] == '-')
			offset = -offset;
		pos += 6;
	}
	else
		return false;
	if (pos != len)
		return false;

	days = (int64) date2j(year, mon, mday) - POSTGRES_EPOCH_JDATE;
	*result = days * USECS_PER_DAY +
		((int64) ((hour * MINS_PER_HOUR + min) * SECS_PER_MINUTE + sec - offset)) * USECS_PER_SEC +
		usec;
	return true;
}

/*
 * cdp_segment_timestamp
 *		SQL: _segment_timestamp(text) RETURNS timestamptz.  The instant an
 *		RFC 3339 timestamp denotes; an error naming the field otherwise.
 */
Datum
cdp_segment_timestamp(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	TimestampTz result;

	if (!parse_rfc3339(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("invalid segment event: \"timestamp\" must be an RFC 3339 date-time with an offset"),
				 errdetail("The value is \"%s\".", text_to_cstring(t)),
				 errhint("Write it like 2021-03-19T13:32:26-04:00 or 2021-03-19T17:32:26.5Z.")));
	PG_RETURN_TIMESTAMPTZ(result);
}
