/*-------------------------------------------------------------------------
 *
 * event_key.c
 *		The key under which event_entities stores an event.
 *
 * event_entities.event_id holds the event's id as text, except that a uuid
 * id is stored as a 22-character key: its 16 bytes in a 64-character
 * alphabet, 6 bits per character, most significant first (the last
 * character carries the last 2 bits, followed by 4 zero bits).  The table
 * and its primary key are then a fifth and a third smaller than with the
 * 36-character text form, and every pass hashes and compares shorter
 * strings.  The alphabet is in ASCII order, so keys sort as the uuids do.
 *
 * cdp_traits.event_key(uuid) and cdp_traits.event_key_uuid(text) convert
 * between the two in SQL (the customer_events view joins through the first).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_event_key);
PG_FUNCTION_INFO_V1(cdp_event_key_uuid);

static const char KeyAlphabet[64] =
"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/*
 * cdp_uuid_to_key
 *		The event key of a uuid, into buf (EVENT_KEY_LEN + 1 bytes).
 */
void
cdp_uuid_to_key(const pg_uuid_t *u, char *buf)
{
	const unsigned char *d = u->data;
	char	   *p = buf;
	int			i;

	for (i = 0; i < 15; i += 3)
	{
		uint32		v = ((uint32) d[i] << 16) | ((uint32) d[i + 1] << 8) | d[i + 2];

		*p++ = KeyAlphabet[(v >> 18) & 63];
		*p++ = KeyAlphabet[(v >> 12) & 63];
		*p++ = KeyAlphabet[(v >> 6) & 63];
		*p++ = KeyAlphabet[v & 63];
	}
	*p++ = KeyAlphabet[d[15] >> 2];
	*p++ = KeyAlphabet[(d[15] & 3) << 4];
	*p = '\0';
}

/*
 * key_value
 *		The 6-bit value of a key character, -1 if it is not one.
 */
static inline int
key_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0' + 1;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 11;
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 38;
	if (c == '-')
		return 0;
	if (c == '_')
		return 37;
	return -1;
}

/*
 * cdp_key_to_uuid
 *		The uuid of an event key; false if s is not one (wrong length, a
 *		character outside the alphabet, or non-zero padding bits).
 */
bool
cdp_key_to_uuid(const char *s, int len, pg_uuid_t *u)
{
	int			v[EVENT_KEY_LEN];
	int			i,
				k;

	if (len != EVENT_KEY_LEN)
		return false;
	for (i = 0; i < EVENT_KEY_LEN; i++)
		if ((v[i] = key_value((unsigned char) s[i])) < 0)
			return false;
	if ((v[21] & 15) != 0)
		return false;
	for (i = 0, k = 0; i < 15; i += 3, k += 4)
	{
		uint32		x = (v[k] << 18) | (v[k + 1] << 12) | (v[k + 2] << 6) | v[k + 3];

		u->data[i] = (x >> 16) & 0xFF;
		u->data[i + 1] = (x >> 8) & 0xFF;
		u->data[i + 2] = x & 0xFF;
	}
	u->data[15] = (v[20] << 2) | (v[21] >> 4);
	return true;
}

/*
 * cdp_event_key
 *		SQL: event_key(uuid) RETURNS text.
 */
Datum
cdp_event_key(PG_FUNCTION_ARGS)
{
	char		buf[EVENT_KEY_LEN + 1];

	cdp_uuid_to_key(PG_GETARG_UUID_P(0), buf);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, EVENT_KEY_LEN));
}

/*
 * cdp_event_key_uuid
 *		SQL: event_key_uuid(text) RETURNS uuid.
 */
Datum
cdp_event_key_uuid(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	if (!cdp_key_to_uuid(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), u))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid event key: \"%s\"", text_to_cstring(t)),
				 errdetail("An event key is the 22-character form of a uuid event id that "
						   "cdp_traits.event_key(uuid) gives."),
				 errhint("Event ids of other types are stored as their text.")));
	PG_RETURN_UUID_P(u);
}
