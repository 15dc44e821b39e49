/*-------------------------------------------------------------------------
 *
 * agg_to_number.c
 *		cdp_traits.to_number(text): text to numeric, NULL (never an error)
 *		for text that is not a number (SPEC section 3).
 *
 * PostgreSQL 15 has no soft input errors, and catching numeric_in's error
 * would need a subtransaction per value.  Instead the text is checked here
 * against the grammar below and against the limits of the numeric format,
 * and only text that numeric_in is sure to accept is passed to it:
 *
 *	 [spaces] [+|-] (digits [. [digits]] | . digits) [(e|E) [+|-] digits] [spaces]
 *
 * "spaces" are what isspace() accepts, as for numeric input.  Not numbers:
 * the empty string, NaN and Infinity (they are numeric values, but not
 * measurements a customer attribute can add up), thousands separators and
 * decimal commas ("1,5"), and values the numeric type cannot hold.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

PG_FUNCTION_INFO_V1(cdp_to_number);
PG_FUNCTION_INFO_V1(cdp_to_float8);

/*
 * Limits of the numeric format (numeric.c): the weight, in base-10000
 * digits, is an int16; the display scale at most 0x3FFF; numeric_in
 * refuses exponents of INT_MAX / 2 and beyond.
 */
#define NUMBER_NBASE_DIGITS		4
#define NUMBER_WEIGHT_MAX		PG_INT16_MAX
#define NUMBER_WEIGHT_MIN		PG_INT16_MIN
#define NUMBER_DSCALE_MAX		0x3FFF
#define NUMBER_EXPONENT_LIMIT	(INT_MAX / 2)

/*
 * is_number
 *		Whether s[0..len) is a number by the grammar above that the numeric
 *		type can represent.
 */
static bool
is_number(const char *s, int len)
{
	const char *p = s;
	const char *end = s + len;
	int64		intdigits = 0;	/* digits before the point */
	int64		fracdigits = 0; /* digits after the point */
	bool		nonzero = false;	/* a non-zero digit was seen */
	int64		dweight = 0;	/* its decimal weight (before the exponent) */
	int64		exponent = 0;

	while (p < end && isspace((unsigned char) *p))
		p++;
	if (p < end && (*p == '+' || *p == '-'))
		p++;

	for (; p < end && isdigit((unsigned char) *p); p++)
	{
		if (!nonzero && *p != '0')
		{
			nonzero = true;
			dweight = intdigits;	/* position for now, weight below */
		}
		intdigits++;
	}
	if (nonzero)
		dweight = intdigits - 1 - dweight;
	if (p < end && *p == '.')
	{
		for (p++; p < end && isdigit((unsigned char) *p); p++)
		{
			fracdigits++;
			if (!nonzero && *p != '0')
			{
				nonzero = true;
				dweight = -fracdigits;
			}
		}
	}
	if (intdigits + fracdigits == 0)
		return false;

	if (p < end && (*p == 'e' || *p == 'E'))
	{
		bool		negative = false;
		bool		any = false;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			negative = (*p++ == '-');
		for (; p < end && isdigit((unsigned char) *p); p++)
		{
			any = true;
			if (exponent < NUMBER_EXPONENT_LIMIT)
				exponent = exponent * 10 + (*p - '0');
		}
		if (!any || exponent >= NUMBER_EXPONENT_LIMIT)
			return false;
		if (negative)
			exponent = -exponent;
	}

	while (p < end && isspace((unsigned char) *p))
		p++;
	if (p != end)
		return false;

	/* the limits of the format: display scale, and weight unless zero */
	if (fracdigits - exponent > NUMBER_DSCALE_MAX)
		return false;
	if (nonzero)
	{
		int64		weight;

		dweight += exponent;
		if (dweight >= 0)
			weight = dweight / NUMBER_NBASE_DIGITS;
		else
			weight = -((-dweight - 1) / NUMBER_NBASE_DIGITS) - 1;
		if (weight > NUMBER_WEIGHT_MAX || weight < NUMBER_WEIGHT_MIN)
			return false;
	}
	return true;
}

/*
 * cdp_to_number
 *		to_number(text) RETURNS numeric: the number, or NULL if the text is
 *		not one.
 */
Datum
cdp_to_number(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	if (!is_number(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall3(numeric_in,
										CStringGetDatum(text_to_cstring(t)),
										ObjectIdGetDatum(InvalidOid),
										Int32GetDatum(-1)));
}

/*
 * cdp_to_float8
 *		_to_float8(text) RETURNS float8: the number in the text as a float8,
 *		or NULL if the text is not a number (as to_number reads it) or is
 *		beyond float8's range (a magnitude over 1.8e308; one too small for
 *		it is 0 or the nearest subnormal).  The weights of most_frequent and
 *		least_frequent attributes: a weight given as text, JSON or numeric
 *		that a cast to float8 refuses is skipped, not the whole attribute's
 *		failure.
 */
Datum
cdp_to_float8(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *s;
	double		result;

	if (!is_number(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		PG_RETURN_NULL();
	s = text_to_cstring(t);
	result = strtod(s, NULL);
	if (isinf(result) || isnan(result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}
