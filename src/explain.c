/*-------------------------------------------------------------------------
 *
 * explain.c
 *		The identifiers behind one entity, for explain_entity().
 *
 * _explain_events(entity) re-evaluates the stitching rules over the stored
 * events of one entity with the same compiled rule columns the triggers use
 * (stitch_config.c), as the extension owner with a pinned search_path, and
 * returns one row per (event, identifier) -- blocklisted values included and
 * flagged, so that a person can see why they did not link -- and one row
 * with a NULL identifier for an event that yields none.  The graph and its
 * DOT rendering are built from these rows in SQL (src/sql/15_explain.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "stitch.h"

PG_FUNCTION_INFO_V1(cdp_explain_events);

/* columns of _explain_events() */
#define EXPLAIN_NATTS 8

/* State of one _explain_events() call. */
typedef struct ExplainReader
{
	StitchConfig *cfg;
	Tuplestorestate *ts;
	TupleDesc	desc;
} ExplainReader;

/*
 * put_identifier
 *		Store one result row: the event columns already in values/nulls,
 *		plus one identifier (or none, when val is NULL).
 */
static void
put_identifier(ExplainReader *r, Datum *values, bool *nulls, int attr, text *val)
{
	if (val == NULL)
	{
		nulls[5] = nulls[6] = nulls[7] = true;
	}
	else
	{
		values[5] = CStringGetTextDatum(r->cfg->attrs[attr]);
		values[6] = PointerGetDatum(val);
		values[7] = BoolGetDatum(stitch_is_blocked(r->cfg, attr, VARDATA_ANY(val),
												   VARSIZE_ANY_EXHDR(val)));
		nulls[5] = nulls[6] = nulls[7] = false;
	}
	tuplestore_putvalues(r->ts, r->desc, values, nulls);
}

/*
 * explain_row
 *		SlotCallback: one row of the explain query (event columns, then the
 *		rule columns) becomes one result row per identifier value.
 */
static void
explain_row(TupleTableSlot *slot, void *arg)
{
	ExplainReader *r = (ExplainReader *) arg;
	StitchConfig *cfg = r->cfg;
	Datum		values[EXPLAIN_NATTS];
	bool		nulls[EXPLAIN_NATTS];
	int			first = 5;
	int			n = 0;
	int			c;

	for (c = 0; c < first; c++)
	{
		values[c] = slot->tts_values[c];
		nulls[c] = slot->tts_isnull[c];
	}
	for (c = 0; c < cfg->ncols; c++)
	{
		Datum		d = slot->tts_values[first + c];

		if (slot->tts_isnull[first + c])
			continue;
		if (!cfg->col_is_set[c])
		{
			put_identifier(r, values, nulls, cfg->col_attr[c], DatumGetTextPP(d));
			n++;
		}
		else
		{
			ArrayType  *arr = DatumGetArrayTypeP(d);
			Datum	   *elems;
			bool	   *elnulls;
			int			nelems;
			int			k;

			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &elnulls, &nelems);
			for (k = 0; k < nelems; k++)
			{
				if (elnulls[k])
					continue;
				put_identifier(r, values, nulls, cfg->col_attr[c],
							   DatumGetTextPP(elems[k]));
				n++;
			}
		}
	}
	if (n == 0)
		put_identifier(r, values, nulls, -1, NULL);
}

/*
 * cdp_explain_events
 *		SQL: _explain_events(entity uuid) RETURNS TABLE(event_id text,
 *		source_id text, type text, version text, event_time timestamptz,
 *		attribute_id text, value text, blocked boolean): the stored events of
 *		an entity with the identifiers the current rules read from them.
 */
Datum
cdp_explain_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		entity = PG_GETARG_DATUM(0);
	CdpExecState es;
	ExplainReader r;
	SPIPlanPtr	plan;
	ParamListInfo params;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != EXPLAIN_NATTS)
		elog(ERROR, "_explain_events must return %d columns", EXPLAIN_NATTS);

	cdp_exec_begin(&es);
	cdp_exec_pin_rule_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	memset(&r, 0, sizeof(r));
	r.cfg = stitch_rules_config();
	/* (the plan's rule columns are read as this configuration made them) */
	stitch_config_pin();
	r.ts = rsinfo->setResult;
	r.desc = rsinfo->setDesc;

	plan = stitch_explain_plan();
	params = makeParamList(1);
	params->params[0].value = entity;
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = UUIDOID;

	/* the snapshot of the calling statement, which resolved the entity */
	cdp_push_caller_snapshot();
	cdp_stream(plan, params, true, explain_row, &r);
	PopActiveSnapshot();
	stitch_config_unpin();
	SPI_finish();
	cdp_exec_end(&es);
	return (Datum) 0;
}
