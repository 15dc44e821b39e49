/*-------------------------------------------------------------------------
 *
 * stitch_read.c
 *		Reading events with their identifiers, streamed.
 *
 * The compiled rule query (stitch_config.c) yields one row per event:
 *   (event id, stored event id, stored entity, rule column 1..k)
 * where the event id is raw for uuid ids (keyed here, see event_key.c) and
 * text for others, and a rule column is text for an ordinary rule and
 * text[] for a set-returning one.  Rows are handed to a DestReceiver as the executor
 * produces them, so nothing is materialized; each row becomes an EventRow
 * (NULL and blocklisted values dropped) passed to the caller's callback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "nodes/plannodes.h"
#include "optimizer/cost.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

#include "stitch.h"

/* A DestReceiver handing each row to a callback. */
typedef struct SlotReader
{
	DestReceiver pub;
	SlotCallback callback;
	void	   *arg;
	MemoryContext rowcxt;		/* reset after each row */
} SlotReader;

typedef struct EventReader
{
	StitchConfig *cfg;
	bool		with_stored;	/* columns 2 and 3 are stored id and entity */
	EventRowCallback callback;
	void	   *arg;
	char		idbuf[UUID_TEXT_LEN + 1];	/* or a key, which is shorter */
	/* per-row buffers */
	int			maxidents;
	int		   *attr;
	const char **val;
	int		   *len;
} EventReader;

/*
 * utf8_blank_at
 *		The length of the Unicode blank that starts at s (before e), or 0:
 *		the white space of Unicode beyond ASCII (U+0085 next line, U+00A0
 *		no-break space, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
 *		U+205F, U+3000 ideographic space) and the invisible marks that ride
 *		along with copied text (U+180E, U+200B-U+200F zero-width spaces,
 *		joiners and direction marks, U+2060 word joiner, U+FEFF byte order
 *		mark), in UTF-8.
 */
static int
utf8_blank_at(const unsigned char *s, const unsigned char *e)
{
	if (e - s >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0))
		return 2;
	if (e - s < 3)
		return 0;
	switch (s[0])
	{
		case 0xE1:
			return ((s[1] == 0x9A && s[2] == 0x80) ||
					(s[1] == 0xA0 && s[2] == 0x8E)) ? 3 : 0;
		case 0xE2:
			if (s[1] == 0x80)
				return (s[2] <= 0x8F || s[2] == 0xA8 || s[2] == 0xA9 ||
						s[2] == 0xAF) ? 3 : 0;
			return (s[1] == 0x81 && (s[2] == 0x9F || s[2] == 0xA0)) ? 3 : 0;
		case 0xE3:
			return (s[1] == 0x80 && s[2] == 0x80) ? 3 : 0;
		case 0xEF:
			return (s[1] == 0xBB && s[2] == 0xBF) ? 3 : 0;
		default:
			return 0;
	}
}

/*
 * stitch_trim
 *		Narrow [*s, *e) to its bytes between leading and trailing white
 *		space: how blocklist entries and values are trimmed alike.  ASCII
 *		white space (stitch_blank) always, and in a UTF-8 database the
 *		Unicode blanks of utf8_blank_at() too ("n/a" followed by a no-break
 *		space, a byte order mark alone).  A value that starts and ends with
 *		a printable ASCII byte (nearly every one) costs two comparisons.
 */
void
stitch_trim(const char **s, const char **e)
{
	const unsigned char *b = (const unsigned char *) *s;
	const unsigned char *f = (const unsigned char *) *e;
	bool		utf8;

	if (b < f && b[0] < 0x80 && !stitch_blank((char) b[0]) &&
		f[-1] < 0x80 && !stitch_blank((char) f[-1]))
		return;
	utf8 = (GetDatabaseEncoding() == PG_UTF8);
	while (b < f)
	{
		if (stitch_blank((char) b[0]))
			b++;
		else if (utf8 && utf8_blank_at(b, f) > 0)
			b += utf8_blank_at(b, f);
		else
			break;
	}
	while (f > b)
	{
		if (stitch_blank((char) f[-1]))
			f--;
		else if (utf8 && f - b >= 2 && utf8_blank_at(f - 2, f) == 2)
			f -= 2;
		else if (utf8 && f - b >= 3 && utf8_blank_at(f - 3, f) == 3)
			f -= 3;
		else
			break;
	}
	*s = (const char *) b;
	*e = (const char *) f;
}

/*
 * stitch_blocklist_lower
 *		Lower-case n bytes of s as blocklist values and entries are compared:
 *		ASCII letters directly (A-Z to a-z, whatever the locale: under a
 *		Turkish collation lower('I') is a dotless i), then, if there is any
 *		other byte, the rest as lower() does in the database's collation.
 *		Returns buf (of bufsize bytes) when the result fits and is plain
 *		ASCII, else a palloc'd string.
 */
char *
stitch_blocklist_lower(const char *s, int n, char *buf, size_t bufsize)
{
	char	   *p;
	char	   *lowered;
	bool		ascii = true;
	int			i;

	p = ((size_t) n < bufsize) ? buf : palloc(n + 1);
	for (i = 0; i < n; i++)
	{
		unsigned char ch = (unsigned char) s[i];

		if (ch >= 0x80)
			ascii = false;
		p[i] = (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
	}
	p[n] = '\0';
	if (ascii)
		return p;
	lowered = str_tolower(p, n, DEFAULT_COLLATION_OID);
	if (p != buf)
		pfree(p);
	return lowered;
}

/*
 * stitch_is_blocked
 *		Whether a value is on the blocklist for an attribute: compared
 *		after trimming white space (stitch_trim) and lower-casing as
 *		stitch_blocklist_lower() does, as the entries were.  A value longer than
 *		CDP_MAX_IDENTIFIER_BYTES counts as blocked: it could not be stored
 *		in matching.
 */
bool
stitch_is_blocked(StitchConfig *cfg, int attr, const char *val, int len)
{
	const char *s = val;
	const char *e = val + len;
	char		buf[64];
	char	   *lowered;
	int			n,
				i;
	bool		blocked = false;

	if (len > CDP_MAX_IDENTIFIER_BYTES)
		return true;
	if (cfg->nblocked == 0)
		return false;
	stitch_trim(&s, &e);
	n = e - s;
	/* lower-casing changes a character's length by at most a factor of 3 */
	if (n > cfg->max_blocked_len * 3)
		return false;
	/*
	 * no blocked value starts like this (non-ASCII first bytes always go
	 * on); '' (all spaces) is compared with the entries like any value
	 */
	if (n > 0 && !cfg->blocked_first[(unsigned char) s[0]])
		return false;
	/* plain ASCII (nearly always) is lower-cased in buf */
	lowered = stitch_blocklist_lower(s, n, buf, sizeof(buf));
	for (i = 0; i < cfg->nblocked && !blocked; i++)
		blocked = (cfg->blocked_attr[i] < 0 || cfg->blocked_attr[i] == attr) &&
			strcmp(cfg->blocked[i], lowered) == 0;
	if (lowered != buf)
		pfree(lowered);
	return blocked;
}

/*
 * add_ident
 *		Append one identifier to the row buffers unless NULL or blocked.
 */
static void
add_ident(EventReader *r, int *n, int attr, text *t)
{
	const char *v = VARDATA_ANY(t);
	int			l = VARSIZE_ANY_EXHDR(t);

	if (stitch_is_blocked(r->cfg, attr, v, l))
		return;
	if (*n >= r->maxidents)
	{
		r->maxidents *= 2;
		r->attr = repalloc(r->attr, sizeof(int) * r->maxidents);
		r->val = repalloc(r->val, sizeof(char *) * r->maxidents);
		r->len = repalloc(r->len, sizeof(int) * r->maxidents);
	}
	r->attr[*n] = attr;
	r->val[*n] = v;
	r->len[*n] = l;
	(*n)++;
}

/*
 * cdp_uuid_to_text
 *		Format a uuid as uuid_out does, into buf (UUID_TEXT_LEN + 1 bytes).
 */
void
cdp_uuid_to_text(const pg_uuid_t *u, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	int			i;
	char	   *p = buf;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->data[i] >> 4];
		*p++ = hex[u->data[i] & 0x0F];
	}
	*p = '\0';
}

/*
 * event_row
 *		SlotCallback turning one row of the identifier query into an EventRow.
 */
static void
event_row(TupleTableSlot *slot, void *arg)
{
	EventReader *r = (EventReader *) arg;
	StitchConfig *cfg = r->cfg;
	EventRow	row;
	int			first = r->with_stored ? 3 : 1;
	int			c;
	int			n = 0;

	memset(&row, 0, sizeof(row));
	if (!slot->tts_isnull[0])
	{
		if (cfg->id_is_uuid)
		{
			if (cfg->uuid_keys)
			{
				cdp_uuid_to_key(DatumGetUUIDP(slot->tts_values[0]), r->idbuf);
				row.event_id_len = EVENT_KEY_LEN;
			}
			else
			{
				cdp_uuid_to_text(DatumGetUUIDP(slot->tts_values[0]), r->idbuf);
				row.event_id_len = UUID_TEXT_LEN;
			}
			row.event_id = r->idbuf;
		}
		else
		{
			text	   *t = DatumGetTextPP(slot->tts_values[0]);

			row.event_id = VARDATA_ANY(t);
			row.event_id_len = VARSIZE_ANY_EXHDR(t);
		}
	}
	if (r->with_stored)
	{
		if (!slot->tts_isnull[1])
		{
			text	   *t = DatumGetTextPP(slot->tts_values[1]);

			row.stored_id = VARDATA_ANY(t);
			row.stored_id_len = VARSIZE_ANY_EXHDR(t);
		}
		if (!slot->tts_isnull[2])
			row.old_entity = DatumGetUUIDP(slot->tts_values[2]);
	}
	for (c = 0; c < cfg->ncols; c++)
	{
		Datum		d = slot->tts_values[first + c];

		if (slot->tts_isnull[first + c])
			continue;
		if (!cfg->col_is_set[c])
			add_ident(r, &n, cfg->col_attr[c], DatumGetTextPP(d));
		else
		{
			ArrayType  *arr = DatumGetArrayTypeP(d);
			Datum	   *elems;
			bool	   *nulls;
			int			nelems;
			int			k;

			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &nelems);
			for (k = 0; k < nelems; k++)
				if (!nulls[k])
					add_ident(r, &n, cfg->col_attr[c], DatumGetTextPP(elems[k]));
		}
	}
	row.nidents = n;
	row.attr = r->attr;
	row.val = r->val;
	row.len = r->len;
	r->callback(&row, r->arg);
}

/*
 * slot_receive
 *		DestReceiver callback: hand the row to the reader's callback, in a
 *		memory context reset after each row.
 */
static bool
slot_receive(TupleTableSlot *slot, DestReceiver *self)
{
	SlotReader *r = (SlotReader *) self;
	MemoryContext old = MemoryContextSwitchTo(r->rowcxt);

	slot_getallattrs(slot);
	r->callback(slot, r->arg);
	MemoryContextSwitchTo(old);
	MemoryContextReset(r->rowcxt);
	return true;
}

/* DestReceiver boilerplate. */
static void
reader_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
reader_shutdown(DestReceiver *self)
{
}

static void
reader_destroy(DestReceiver *self)
{
}

/*
 * cdp_stream
 *		Run a kept plan and call callback for every row as it is produced
 *		(nothing is materialized).  params may be NULL.  read_only runs the
 *		query on the active snapshot.
 */
void
cdp_stream(SPIPlanPtr plan, ParamListInfo params, bool read_only,
		   SlotCallback callback, void *arg)
{
	SlotReader	r;
	SPIExecuteOptions opts;
	int			rc;

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = slot_receive;
	r.pub.rStartup = reader_startup;
	r.pub.rShutdown = reader_shutdown;
	r.pub.rDestroy = reader_destroy;
	r.pub.mydest = DestSQLFunction;	/* anything but DestNone, which discards */
	r.callback = callback;
	r.arg = arg;
	r.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "cdp_traits row",
									 ALLOCSET_SMALL_SIZES);
	memset(&opts, 0, sizeof(opts));
	opts.params = params;
	opts.read_only = read_only;
	opts.dest = (DestReceiver *) &r;
	rc = SPI_execute_plan_extended(plan, &opts);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "streaming query failed: %s", SPI_result_code_string(rc));
	MemoryContextDelete(r.rowcxt);
}

/*
 * cdp_uuid_array_param
 *		A one-parameter list holding a uuid[] datum.
 */
ParamListInfo
cdp_uuid_array_param(Datum arr)
{
	ParamListInfo params = makeParamList(1);

	params->params[0].value = arr;
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = UUIDARRAYOID;
	return params;
}

/*
 * stitch_read_plan
 *		Run an identifier query (of the shape stitch_identifier_sql builds)
 *		and call callback for every event.  The caller has pinned the
 *		configuration the query was made from (stitch_config_pin): its rule
 *		columns are read as that one lists them.
 */
void
stitch_read_plan(SPIPlanPtr plan, bool with_stored, ParamListInfo params,
				 bool read_only, EventRowCallback callback, void *arg)
{
	EventReader r;

	memset(&r, 0, sizeof(r));
	r.cfg = stitch_rules_config();
	r.with_stored = with_stored;
	r.callback = callback;
	r.arg = arg;
	r.maxidents = 16;
	r.attr = palloc(sizeof(int) * r.maxidents);
	r.val = palloc(sizeof(char *) * r.maxidents);
	r.len = palloc(sizeof(int) * r.maxidents);
	cdp_stream(plan, params, read_only, event_row, &r);
}

/*
 * planned_workers
 *		The parallel workers the generic plan of a kept one-statement plan
 *		asks for at its top (0 for a serial plan or none made yet).
 */
static int
planned_workers(SPIPlanPtr plan)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);
	CachedPlanSource *src;
	PlannedStmt *stmt;

	if (list_length(sources) != 1)
		return 0;
	src = (CachedPlanSource *) linitial(sources);
	if (src->gplan == NULL || list_length(src->gplan->stmt_list) != 1)
		return 0;
	stmt = linitial_node(PlannedStmt, src->gplan->stmt_list);
	if (stmt->planTree && IsA(stmt->planTree, Gather))
		return ((Gather *) stmt->planTree)->num_workers;
	return 0;
}

/* tables whose rows a read of every event skips (stitch_read_skip) */
static List *SkippedLeaves = NIL;

/*
 * stitch_read_skip
 *		From now on, reads of every event (SRC_ALL_EVENTS) skip the rows of
 *		the tables in leaves (OIDs), until called again with NIL.
 */
void
stitch_read_skip(List *leaves)
{
	SkippedLeaves = leaves;
}

/*
 * stitch_read_events
 *		Run the identifier query over source and call callback for every
 *		event.  entities ($1) is used by SRC_ENTITY_EVENTS.  read_only runs
 *		the query on the active snapshot.
 */
void
stitch_read_events(StitchSource source, Oid relid, Datum entities,
				   bool read_only, EventRowCallback callback, void *arg)
{
	SPIPlanPtr	plan;
	int			nest = -1;

	/* (the plan's rule columns are read as the configuration made them) */
	(void) stitch_rules_config();
	stitch_config_pin();

	/* (a plan of its own, not kept, when tables are skipped) */
	if (source == SRC_ALL_EVENTS && SkippedLeaves != NIL)
		plan = cdp_prepare(stitch_all_events_sql_except(SkippedLeaves), 0, NULL);
	else
		plan = stitch_identifier_plan(source, relid);

	if (source == SRC_ALL_EVENTS)
	{
		/*
		 * Reading every event: this process unites identifiers as rows
		 * arrive, which costs about as much as evaluating the rule
		 * expressions.  The default parallel setup and tuple costs price a
		 * worker against a leader that would otherwise only pass rows on;
		 * here a worker evaluating the expressions while this process
		 * unites is worth its setup and its tuple queue, so the plan is made
		 * with both costs at zero.  One worker keeps pace with the uniting:
		 * more would only compete with it for the cores.  A setting of 0
		 * workers (no parallel query) is kept.  The plan is made on its first
		 * execution (or again after an invalidation), inside this window.
		 */
		nest = NewGUCNestLevel();
		(void) set_config_option("parallel_setup_cost", "0", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("parallel_tuple_cost", "0", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (max_parallel_workers_per_gather > 1)
			(void) set_config_option("max_parallel_workers_per_gather", "1",
									 PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	}
	stitch_read_plan(plan, source == SRC_ENTITY_EVENTS,
					 source == SRC_ENTITY_EVENTS ? cdp_uuid_array_param(entities) : NULL,
					 read_only, callback, arg);
	if (nest >= 0)
	{
		AtEOXact_GUC(true, nest);
		elog(DEBUG1, "cdp_traits stitching pass: parallel workers planned for reading events: %d",
			 planned_workers(plan));
	}
	stitch_config_unpin();
}

/*
 * stitch_read_ids
 *		Run a query returning event keys (see stitch_key_sql); the keys,
 *		palloc'd.  NULL keys (events without an id, never stitched) are left
 *		out.
 */
const char **
stitch_read_ids(SPIPlanPtr plan, int *n)
{
	const char **ids;
	uint64		i;
	int			m = 0;

	cdp_execute(plan, NULL, NULL, SPI_OK_SELECT, "reading ids of events");
	ids = palloc_extended(sizeof(char *) * Max(SPI_processed, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (id != NULL)
			ids[m++] = id;
	}
	*n = m;
	SPI_freetuptable(SPI_tuptable);
	return ids;
}
