/*-------------------------------------------------------------------------
 *
 * segment_time.c
 *		The type of a segmentation event's timestamp (SPEC section 6):
 *		cdp_traits.rfc3339, an instant (stored as timestamptz is) whose text
 *		input is RFC 3339 with an explicit offset and nothing else.
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
 * Only instants that RFC 3339 can write in UTC are accepted: from
 * 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.  A date-time near
 * either end whose offset (or rounding, or leap second) moves it past the end
 * -- 9999-12-31T23:59:59-23:59 is in the year 10000 in UTC -- is rejected, as
 * is a timestamptz outside that range (BC, or after 9999) in the cast and in
 * binary input.  So every stored value is written as RFC 3339 and read back
 * by the input function: a dump of segment_events restores.
 *
 * Because segment_events.timestamp has this type, rows loaded with COPY are
 * checked by the same code as ingest_segment_event(), and nothing but the
 * instant is stored.  The type is binary-compatible with timestamptz (an
 * implicit cast), so events compare as instants, never as texts; output is
 * RFC 3339 in UTC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "cdp_traits.h"
#include "segment.h"

PG_FUNCTION_INFO_V1(cdp_rfc3339_in);
PG_FUNCTION_INFO_V1(cdp_rfc3339_out);
PG_FUNCTION_INFO_V1(cdp_rfc3339_recv);
PG_FUNCTION_INFO_V1(cdp_rfc3339_from_timestamptz);

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
 * rfc3339_in_range
 *		Whether a timestamptz is an instant that RFC 3339 writes in UTC: from
 *		the year 0000 to 9999 (infinities are not).
 */
static bool
rfc3339_in_range(TimestampTz t)
{
	/* microseconds since 2000-01-01 of 0000-01-01 and of 10000-01-01 */
	const TimestampTz lo = ((int64) date2j(0, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	const TimestampTz hi = ((int64) date2j(10000, 1, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;

	return !TIMESTAMP_NOT_FINITE(t) && t >= lo && t < hi;
}

/*
 * check_rfc3339_range
 *		Raise an error if t cannot be written as RFC 3339 in UTC; given is
 *		the value as the caller got it (for the message).
 */
static void
check_rfc3339_range(TimestampTz t, const char *given)
{
	if (!rfc3339_in_range(t))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("invalid segment event: \"timestamp\" must be between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"),
				 errdetail("The value is \"%s\"; in UTC it is outside the years 0000 to 9999, which RFC 3339 cannot write.", given),
				 errhint("RFC 3339 writes the years 0000 (1 BC) to 9999 only: correct the date, or the offset that moves it out of them in UTC.")));
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
 * put_digits
 *		Write v as exactly n decimal digits (v < 10^n).
 */
static inline char *
put_digits(char *p, int v, int n)
{
	int			i;

	for (i = n - 1; i >= 0; i--)
	{
		p[i] = '0' + v % 10;
		v /= 10;
	}
	return p + n;
}

/*
 * cdp_format_rfc3339
 *		Write a finite instant as RFC 3339 in UTC ("2021-03-19T17:32:26Z",
 *		with a fraction only when there is one, trailing zeros dropped) into
 *		buf (RFC3339_MAXLEN + 1 bytes); returns the length.  Years outside
 *		0..9999 and infinities, which RFC 3339 cannot write (and the type no
 *		longer accepts; a value stored before it checked that could hold
 *		them), are written as timestamptz writes them in ISO style.
 */
int
cdp_format_rfc3339(TimestampTz t, char *buf)
{
	int64		days = t / USECS_PER_DAY;
	int64		time = t % USECS_PER_DAY;
	int			year = 0,
				mon = 0,
				mday = 0,
				secs,
				frac;
	char	   *p = buf;

	if (time < 0)
	{
		time += USECS_PER_DAY;
		days--;
	}
	if (!TIMESTAMP_NOT_FINITE(t))
		j2date((int) (days + POSTGRES_EPOCH_JDATE), &year, &mon, &mday);
	if (TIMESTAMP_NOT_FINITE(t) || year < 0 || year > 9999)
	{
		char	   *s = DatumGetCString(DirectFunctionCall1(timestamptz_out,
															TimestampTzGetDatum(t)));

		strlcpy(buf, s, RFC3339_MAXLEN + 1);
		return strlen(buf);
	}
	secs = (int) (time / USECS_PER_SEC);
	frac = (int) (time % USECS_PER_SEC);
	p = put_digits(p, year, 4);
	*p++ = '-';
	p = put_digits(p, mon, 2);
	*p++ = '-';
	p = put_digits(p, mday, 2);
	*p++ = 'T';
	p = put_digits(p, secs / SECS_PER_HOUR, 2);
	*p++ = ':';
	p = put_digits(p, secs / SECS_PER_MINUTE % MINS_PER_HOUR, 2);
	*p++ = ':';
	p = put_digits(p, secs % SECS_PER_MINUTE, 2);
	if (frac != 0)
	{
		int			n = 6;

		while (frac % 10 == 0)
		{
			frac /= 10;
			n--;
		}
		*p++ = '.';
		p = put_digits(p, frac, n);
	}
	*p++ = 'Z';
	*p = '\0';
	return p - buf;
}

/*
 * cdp_rfc3339_in
 *		Input of cdp_traits.rfc3339: the instant an RFC 3339 date-time
 *		denotes; an error naming the field otherwise.
 */
Datum
cdp_rfc3339_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	TimestampTz result;

	if (!parse_rfc3339(s, strlen(s), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("invalid segment event: \"timestamp\" must be an RFC 3339 date-time with an offset"),
				 errdetail("The value is \"%s\".", s),
				 errhint("Write it like 2021-03-19T13:32:26-04:00 or 2021-03-19T17:32:26.5Z.")));
	check_rfc3339_range(result, s);
	PG_RETURN_TIMESTAMPTZ(result);
}

/*
 * cdp_rfc3339_out
 *		Output of cdp_traits.rfc3339: RFC 3339 in UTC.
 */
Datum
cdp_rfc3339_out(PG_FUNCTION_ARGS)
{
	char	   *buf = palloc(RFC3339_MAXLEN + 1);

	cdp_format_rfc3339(PG_GETARG_TIMESTAMPTZ(0), buf);
	PG_RETURN_CSTRING(buf);
}

/*
 * cdp_rfc3339_recv
 *		Binary input of cdp_traits.rfc3339: timestamptz's, limited to the
 *		instants the text output can write (see check_rfc3339_range).
 */
Datum
cdp_rfc3339_recv(PG_FUNCTION_ARGS)
{
	TimestampTz t = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_recv,
															PG_GETARG_DATUM(0),
															ObjectIdGetDatum(InvalidOid),
															Int32GetDatum(-1)));

	if (!rfc3339_in_range(t))
		check_rfc3339_range(t, timestamptz_to_str(t));
	PG_RETURN_TIMESTAMPTZ(t);
}

/*
 * cdp_rfc3339_from_timestamptz
 *		The assignment cast from timestamptz: any finite instant from the
 *		year 0000 to 9999 in UTC.
 */
Datum
cdp_rfc3339_from_timestamptz(PG_FUNCTION_ARGS)
{
	TimestampTz t = PG_GETARG_TIMESTAMPTZ(0);

	if (TIMESTAMP_NOT_FINITE(t))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("invalid segment event: \"timestamp\" must be a finite point in time")));
	if (!rfc3339_in_range(t))
		check_rfc3339_range(t, timestamptz_to_str(t));
	PG_RETURN_TIMESTAMPTZ(t);
}
