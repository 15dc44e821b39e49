/*-------------------------------------------------------------------------
 *
 * convert.c
 *		Conversions that never fail: text to boolean, date, timestamptz and
 *		uuid, returning NULL for text that is not one.
 *
 * Attribute values come from event payloads that nobody validated; a
 * definition's data_type says what the value should be, and values that do
 * not convert are skipped and counted, never fatal (SPEC section 4).
 * PostgreSQL 15's input functions raise errors, and catching those costs a
 * subtransaction per value, so these functions call the date/time parser's
 * error-code interface directly instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "cdp_traits.h"

PG_FUNCTION_INFO_V1(cdp_to_boolean);
PG_FUNCTION_INFO_V1(cdp_to_date);
PG_FUNCTION_INFO_V1(cdp_to_timestamptz);
PG_FUNCTION_INFO_V1(cdp_to_uuid);

/*
 * trimmed
 *		The text argument without surrounding white space, as a C string.
 */
static char *
trimmed(text *t)
{
	char	   *s = text_to_cstring(t);
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

/*
 * cdp_to_boolean
 *		SQL: _to_boolean(text) RETURNS boolean: true/false/yes/no/on/off/1/0
 *		(any case, unique prefixes as in PostgreSQL), NULL for anything else.
 */
Datum
cdp_to_boolean(PG_FUNCTION_ARGS)
{
	char	   *s = trimmed(PG_GETARG_TEXT_PP(0));
	bool		result;

	if (*s == '\0' || !parse_bool(s, &result))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(result);
}

/*
 * plain_datetime_words
 *		Whether every run of letters in s is one the parser handles without
 *		looking up a time zone by name (a name it does not know is an error,
 *		not an error code, in PostgreSQL 15): the ISO 8601 T and Z, UTC, GMT,
 *		AM/PM and English month and day abbreviations.
 */
static bool
plain_datetime_words(const char *s)
{
	static const char *const words[] = {
		"t", "z", "utc", "gmt", "am", "pm",
		"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept",
		"oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", NULL
	};

	while (*s)
	{
		const char *start;
		size_t		len;
		int			i;
		bool		known = false;

		if (!isalpha((unsigned char) *s))
		{
			s++;
			continue;
		}
		start = s;
		while (isalpha((unsigned char) *s))
			s++;
		len = s - start;
		for (i = 0; words[i]; i++)
			if (strlen(words[i]) == len && pg_strncasecmp(start, words[i], len) == 0)
				known = true;
		if (!known)
			return false;
	}
	return true;
}

/*
 * iso_offsets
 *		s with "GMT" or "UTC" dropped where an offset follows it at once
 *		("GMT+0100", "UTC-05:00"), so that the offset is read as ISO 8601
 *		reads it, east of Greenwich positive, as JavaScript's Date.toString()
 *		("Tue Jan 02 2024 10:00:00 GMT+0100") and Java's "z" pattern write
 *		it.  PostgreSQL's parser reads such a word as a POSIX time zone, whose
 *		sign is the other way round and whose "0100" is 100 hours: that
 *		instant was 4 days and 5 hours later than the one meant.  The zone's
 *		name in parentheses after such an offset is dropped too.
 */
static const char *
iso_offsets(const char *s)
{
	char	   *result;
	char	   *p;
	char	   *open;
	char	   *end;
	const char *c;

	/* (most text holds neither: read as it is, without a copy) */
	for (c = s; *c; c++)
		if (*c == '(' || ((*c == '+' || *c == '-') && c - s >= 3 &&
						  (pg_strncasecmp(c - 3, "gmt", 3) == 0 ||
						   pg_strncasecmp(c - 3, "utc", 3) == 0)))
			break;
	if (*c == '\0')
		return s;

	result = pstrdup(s);
	open = strrchr(result, '(');
	end = result + strlen(result);

	/*
	 * Date.toString() ends with the zone's name in parentheses after the
	 * offset, "GMT+0100 (Central European Standard Time)": the name says
	 * nothing the offset does not, and is dropped when such an offset comes
	 * right before it and nothing after it (a name alone, "10:00 (CET)",
	 * stays, and makes the text no time).
	 */
	if (open && end > open && end[-1] == ')' && strchr(open, ')') == end - 1)
	{
		char	   *before = open;
		char	   *q;

		while (before > result && isspace((unsigned char) before[-1]))
			before--;
		q = before;
		while (q > result && (isdigit((unsigned char) q[-1]) || q[-1] == ':'))
			q--;
		if (q < before && q - result >= 4 && (q[-1] == '+' || q[-1] == '-') &&
			(pg_strncasecmp(q - 4, "gmt", 3) == 0 || pg_strncasecmp(q - 4, "utc", 3) == 0))
			*before = '\0';
	}

	for (p = result; *p; p++)
	{
		if ((pg_strncasecmp(p, "gmt", 3) == 0 || pg_strncasecmp(p, "utc", 3) == 0) &&
			(p[3] == '+' || p[3] == '-') &&
			(p == result || !isalpha((unsigned char) p[-1])))
			memset(p, ' ', 3);
	}
	return result;
}

/*
 * decode_datetime
 *		Parse s as a date/time; false if it is not one (or is a special value
 *		such as 'infinity', 'epoch' or 'now', which data never means).
 */
static bool
decode_datetime(const char *s, struct pg_tm *tm, fsec_t *fsec, int *tz)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;

	if (*s == '\0' || strlen(s) > MAXDATELEN)
		return false;
	s = iso_offsets(s);
	if (!plain_datetime_words(s))
		return false;
	if (ParseDateTime(s, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0)
		return false;
	if (DecodeDateTime(field, ftype, nf, &dtype, tm, fsec, tz) != 0)
		return false;
	return dtype == DTK_DATE;
}

/*
 * cdp_to_date
 *		SQL: _to_date(text) RETURNS date, NULL for text that is not a date.
 */
Datum
cdp_to_date(PG_FUNCTION_ARGS)
{
	char	   *s = trimmed(PG_GETARG_TEXT_PP(0));
	struct pg_tm tt;
	fsec_t		fsec;
	int			tz;
	DateADT		result;

	if (!decode_datetime(s, &tt, &fsec, &tz))
		PG_RETURN_NULL();
	if (!IS_VALID_JULIAN(tt.tm_year, tt.tm_mon, tt.tm_mday))
		PG_RETURN_NULL();
	result = date2j(tt.tm_year, tt.tm_mon, tt.tm_mday) - POSTGRES_EPOCH_JDATE;
	if (!IS_VALID_DATE(result))
		PG_RETURN_NULL();
	PG_RETURN_DATEADT(result);
}

/*
 * cdp_to_timestamptz
 *		SQL: _to_timestamptz(text) RETURNS timestamptz, NULL for text that is
 *		not a point in time.  Text without an offset is read in the session
 *		time zone (the attribute engine runs in UTC).
 */
Datum
cdp_to_timestamptz(PG_FUNCTION_ARGS)
{
	char	   *s = trimmed(PG_GETARG_TEXT_PP(0));
	struct pg_tm tt;
	fsec_t		fsec;
	int			tz;
	TimestampTz result;

	if (!decode_datetime(s, &tt, &fsec, &tz))
		PG_RETURN_NULL();
	if (tm2timestamp(&tt, fsec, &tz, &result) != 0 || !IS_VALID_TIMESTAMP(result))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(result);
}

/*
 * hex_value
 *		The value of the hex digit c, or -1 if c is not one.
 */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * cdp_to_uuid
 *		SQL: _to_uuid(text) RETURNS uuid, NULL for text that is not a uuid.
 *		Reads what uuid's input function reads (32 hex digits in any case, a
 *		hyphen allowed after any group of four but the last, the whole in
 *		braces or not), after trimming surrounding white space: the id
 *		column of an external trait's table ('', 'n/a', 'None' of a bad
 *		join name no entity).
 */
Datum
cdp_to_uuid(PG_FUNCTION_ARGS)
{
	char	   *s = trimmed(PG_GETARG_TEXT_PP(0));
	pg_uuid_t  *result = (pg_uuid_t *) palloc(sizeof(pg_uuid_t));
	bool		braces = false;
	int			i;

	if (*s == '{')
	{
		braces = true;
		s++;
	}
	for (i = 0; i < UUID_LEN; i++)
	{
		int			hi = hex_value(s[0]);
		int			lo = hi < 0 ? -1 : hex_value(s[1]);

		if (lo < 0)
			PG_RETURN_NULL();
		result->data[i] = (unsigned char) (hi * 16 + lo);
		s += 2;
		if (s[0] == '-' && (i % 2) == 1 && i < UUID_LEN - 1)
			s++;
	}
	if (braces && *s++ != '}')
		PG_RETURN_NULL();
	if (*s != '\0')
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(result);
}
