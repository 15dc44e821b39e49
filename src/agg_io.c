/*-------------------------------------------------------------------------
 *
 * agg_io.c
 *		Input, output, send and receive of cdp_traits.agg_state: the
 *		portable form of a state, and its validation.
 *
 * The in-memory image (agg.h) holds datum images and OIDs, which mean
 * nothing to another server.  Outside the server a state is written in a
 * portable binary form (the send/receive format; the text form is the same
 * bytes in hex, "\x..."), all integers in network byte order:
 *
 *	 uint8	 format version (1)
 *	 uint8	 kind: 1 frequency, 2 unique, 3 first, 4 last
 *	 string	 element type, schema-qualified (format_type_be_qualified)
 *	 string	 collation schema, or empty
 *	 string	 collation name, or empty
 *	 frequency, unique: int32 count (>= 1), then count times:
 *			 [float8 weight, frequency only] value
 *	 first, last: int64 timestamp (timestamptz), value
 *
 * where a string is an int32 length and that many bytes (server encoding)
 * and a value an int32 length and the bytes of the type's send function.
 *
 * Reading a state checks everything: lengths and counts against the bytes
 * left, the version and kind, that the type exists, is a base type with a
 * binary receive function and a default btree ordering, that the collation
 * exists, that every value is accepted by the type's receive function and
 * consumes exactly its bytes, the timestamps, and that nothing is left
 * over.  Anything else is an error, never a crash.  Values are added one
 * by one, so unsorted or repeated values in the input are merged as any
 * other input would be.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "nodes/value.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "agg.h"

PG_FUNCTION_INFO_V1(cdp_agg_state_in);
PG_FUNCTION_INFO_V1(cdp_agg_state_out);
PG_FUNCTION_INFO_V1(cdp_agg_state_recv);
PG_FUNCTION_INFO_V1(cdp_agg_state_send);

/* version of the portable format */
#define AGG_FORMAT_VERSION	1

static void corrupt(const char *detail) pg_attribute_noreturn();

/*
 * corrupt
 *		Report a state that does not read.
 */
static void
corrupt(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid cdp_traits.agg_state"),
			 errdetail_internal("%s", detail)));
}

/*
 * send_string
 *		Write a length-prefixed string.
 */
static void
send_string(StringInfo buf, const char *s)
{
	int			len = strlen(s);

	pq_sendint32(buf, len);
	pq_sendbytes(buf, s, len);
}

/*
 * recv_string
 *		Read a length-prefixed string: no longer than what is left, no NUL
 *		bytes, valid in the server encoding.
 */
static char *
recv_string(StringInfo buf, const char *what)
{
	int			len = pq_getmsgint(buf, 4);
	char	   *s;

	if (len < 0 || len > buf->len - buf->cursor)
		corrupt(psprintf("The length of the %s is out of range.", what));
	s = palloc(len + 1);
	pq_copymsgbytes(buf, s, len);
	s[len] = '\0';
	if (strlen(s) != len)
		corrupt(psprintf("The %s contains a zero byte.", what));
	(void) pg_verifymbstr(s, len, false);
	return s;
}

/*
 * recv_type
 *		Read the element type name: an existing base type with a binary
 *		receive function (the ordering is checked by agg_type_info).
 */
static Oid
recv_type(StringInfo buf)
{
	char	   *name = recv_string(buf, "type name");
	Oid			typid;
	int32		typmod;

	if (name[0] == '\0')
		corrupt("The type name is empty.");
	parseTypeString(name, &typid, &typmod, false);
	if (get_typtype(typid) == TYPTYPE_PSEUDO)
		corrupt(psprintf("Type %s is a pseudo-type.", format_type_be(typid)));
	if (getBaseType(typid) != typid)
		corrupt(psprintf("Type %s is a domain.", format_type_be(typid)));
	return typid;
}

/*
 * recv_collation
 *		Read the collation (schema and name, both empty for none).
 */
static Oid
recv_collation(StringInfo buf)
{
	char	   *nsp = recv_string(buf, "collation schema");
	char	   *name = recv_string(buf, "collation name");

	if (nsp[0] == '\0' && name[0] == '\0')
		return InvalidOid;
	if (nsp[0] == '\0' || name[0] == '\0')
		corrupt("The collation is incomplete.");
	return get_collation_oid(list_make2(makeString(nsp), makeString(name)), false);
}

/*
 * send_collation
 *		Write a collation as schema and name.
 */
static void
send_collation(StringInfo buf, Oid collid)
{
	HeapTuple	tup;
	Form_pg_collation coll;

	if (!OidIsValid(collid))
	{
		send_string(buf, "");
		send_string(buf, "");
		return;
	}
	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for collation %u", collid);
	coll = (Form_pg_collation) GETSTRUCT(tup);
	send_string(buf, get_namespace_name(coll->collnamespace));
	send_string(buf, NameStr(coll->collname));
	ReleaseSysCache(tup);
}

/*
 * recv_value
 *		Read one value through the type's receive function, which must
 *		consume exactly the value's bytes.
 */
static Datum
recv_value(StringInfo buf, AggTypeInfo *info)
{
	int			len = pq_getmsgint(buf, 4);
	StringInfoData vbuf;
	char		saved;
	Datum		value;

	if (len < 0 || len > buf->len - buf->cursor)
		corrupt("The length of a value is out of range.");

	/* a read-only view of the value's bytes, NUL-terminated as usual */
	vbuf.data = &buf->data[buf->cursor];
	vbuf.maxlen = len + 1;
	vbuf.len = len;
	vbuf.cursor = 0;
	saved = buf->data[buf->cursor + len];
	buf->data[buf->cursor + len] = '\0';
	value = ReceiveFunctionCall(&info->ioproc, &vbuf, info->typioparam, -1);
	buf->data[buf->cursor + len] = saved;
	if (vbuf.cursor != len)
		corrupt(psprintf("A value of type %s is not in binary format.",
						 format_type_be(info->basetypid)));
	buf->cursor += len;
	return value;
}

/*
 * remember_names
 *		Keep the bytes of the type and collation names of info's type and
 *		collation as the portable form writes them: reading or writing many
 *		states of one type (a column of them) then compares or copies them
 *		instead of parsing the type name and looking up the collation for
 *		each.
 */
static void
remember_names(AggTypeInfo *info, const char *bytes, int len)
{
	if (info->io_names != NULL)
		pfree(info->io_names);
	info->io_names = MemoryContextAlloc(info->cxt, len);
	memcpy(info->io_names, bytes, len);
	info->io_names_len = len;
}

/*
 * agg_state_read
 *		Build a state from its portable form (a receive buffer, or the
 *		decoded bytes of the text form).
 */
static CdpAggState *
agg_state_read(FunctionCallInfo fcinfo, StringInfo buf)
{
	int			version = pq_getmsgbyte(buf);
	int			kind = pq_getmsgbyte(buf);
	Oid			typid;
	AggTypeInfo *info;
	CdpAggState *state = NULL;

	if (version != AGG_FORMAT_VERSION)
		corrupt(psprintf("Format version %d is not supported.", version));
	if (kind < AGG_KIND_FREQUENCY || kind > AGG_KIND_LAST)
		corrupt(psprintf("Kind %d is unknown.", kind));
	info = (AggTypeInfo *) fcinfo->flinfo->fn_extra;
	if (info != NULL && info->io_names != NULL &&
		buf->len - buf->cursor >= info->io_names_len &&
		memcmp(buf->data + buf->cursor, info->io_names, info->io_names_len) == 0)
	{
		/* the names of the previous state's type and collation */
		buf->cursor += info->io_names_len;
	}
	else
	{
		int			start = buf->cursor;
		Oid			collid;

		typid = recv_type(buf);
		collid = recv_collation(buf);
		info = agg_type_info(fcinfo, typid, collid);
		remember_names(info, buf->data + start, buf->cursor - start);
	}
	typid = info->typid;
	if (!info->io_ready)
	{
		Oid			recvproc;

		getTypeBinaryInputInfo(typid, &recvproc, &info->typioparam);
		fmgr_info_cxt(recvproc, &info->ioproc, info->cxt);
		info->io_ready = true;
	}

	if (AGG_KIND_IS_MULTISET(kind))
	{
		int			count = pq_getmsgint(buf, 4);
		int			least = 4 + (kind == AGG_KIND_FREQUENCY ? 8 : 0);
		int			i;

		if (count < 1 || count > (buf->len - buf->cursor) / least)
			corrupt(psprintf("The count of values (%d) is out of range.", count));
		for (i = 0; i < count; i++)
		{
			float8		weight = 1.0;
			Datum		value;

			if (kind == AGG_KIND_FREQUENCY)
				weight = pq_getmsgfloat8(buf);
			value = recv_value(buf, info);
			state = agg_multiset_add(info, state, kind, value, weight);
		}
	}
	else
	{
		TimestampTz at = pq_getmsgint64(buf);

		if (!TIMESTAMP_NOT_FINITE(at) && !IS_VALID_TIMESTAMP(at))
			corrupt("The timestamp is out of range.");
		state = agg_pick_set(info, NULL, kind, at, recv_value(buf, info));
	}
	if (buf->cursor != buf->len)
		corrupt(psprintf("%d bytes are left over.", buf->len - buf->cursor));
	return agg_state_pack_copy(info, state);
}

/*
 * agg_state_write
 *		The portable form of a state.
 */
static bytea *
agg_state_write(FunctionCallInfo fcinfo, CdpAggState *state)
{
	AggTypeInfo *info = agg_type_info(fcinfo, state->typid, state->collid);
	StringInfoData buf;

	if (!info->io_ready)
	{
		Oid			sendproc;
		bool		isvarlena;

		getTypeBinaryOutputInfo(state->typid, &sendproc, &isvarlena);
		fmgr_info_cxt(sendproc, &info->ioproc, info->cxt);
		info->io_ready = true;
	}

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, AGG_FORMAT_VERSION);
	pq_sendbyte(&buf, state->kind);
	if (info->io_names != NULL)
		pq_sendbytes(&buf, info->io_names, info->io_names_len);
	else
	{
		int			start = buf.len;

		send_string(&buf, format_type_be_qualified(state->typid));
		send_collation(&buf, state->collid);
		remember_names(info, buf.data + start, buf.len - start);
	}
	if (AGG_KIND_IS_MULTISET(state->kind))
	{
		uint32		count;
		AggItem    *items = agg_multiset_sorted(info, state, &count);
		uint32		i;

		pq_sendint32(&buf, count);
		for (i = 0; i < count; i++)
		{
			bytea	   *b;

			if (state->kind == AGG_KIND_FREQUENCY)
				pq_sendfloat8(&buf, items[i].weight);
			b = SendFunctionCall(&info->ioproc,
								 agg_result_value(info, items[i].value));
			pq_sendint32(&buf, VARSIZE(b) - VARHDRSZ);
			pq_sendbytes(&buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
		}
	}
	else
	{
		bytea	   *b;

		pq_sendint64(&buf, agg_pick_at(state));
		b = SendFunctionCall(&info->ioproc,
							 agg_result_value(info, agg_pick_value(info, state)));
		pq_sendint32(&buf, VARSIZE(b) - VARHDRSZ);
		pq_sendbytes(&buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
	}
	return pq_endtypsend(&buf);
}

/*
 * cdp_agg_state_in
 *		agg_state_in(cstring): "\x" and the portable form in hex.
 */
Datum
cdp_agg_state_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	size_t		len = strlen(str);
	StringInfoData buf;

	if (len < 2 || str[0] != '\\' || str[1] != 'x')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type cdp_traits.agg_state"),
				 errdetail("A state is written as \\x followed by hexadecimal digits.")));
	initStringInfo(&buf);
	enlargeStringInfo(&buf, (len - 2) / 2 + 1);
	buf.len = hex_decode(str + 2, len - 2, buf.data);
	buf.data[buf.len] = '\0';
	PG_RETURN_POINTER(agg_state_read(fcinfo, &buf));
}

/*
 * cdp_agg_state_out
 *		agg_state_out(agg_state): the portable form in hex.
 */
Datum
cdp_agg_state_out(PG_FUNCTION_ARGS)
{
	CdpAggState *state = agg_state_arg(fcinfo, 0);
	bytea	   *b = agg_state_write(fcinfo, state);
	Size		len = VARSIZE(b) - VARHDRSZ;
	char	   *out = palloc(len * 2 + 3);
	uint64		n;

	out[0] = '\\';
	out[1] = 'x';
	n = hex_encode(VARDATA(b), len, out + 2);
	out[n + 2] = '\0';
	PG_RETURN_CSTRING(out);
}

/*
 * cdp_agg_state_recv
 *		agg_state_recv(internal): the portable form.
 */
Datum
cdp_agg_state_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);

	PG_RETURN_POINTER(agg_state_read(fcinfo, buf));
}

/*
 * cdp_agg_state_send
 *		agg_state_send(agg_state): the portable form.
 */
Datum
cdp_agg_state_send(PG_FUNCTION_ARGS)
{
	CdpAggState *state = agg_state_arg(fcinfo, 0);

	PG_RETURN_BYTEA_P(agg_state_write(fcinfo, state));
}
