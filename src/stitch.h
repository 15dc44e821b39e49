/*-------------------------------------------------------------------------
 *
 * stitch.h
 *		Declarations shared by the profile-stitching source files.
 *
 * stitch_config.c  the attached events table, the rules compiled to SQL,
 *                  plan cache and its invalidation, rule validation
 * stitch_read.c    streaming events and their identifiers out of the
 *                  compiled rule query; the blocklist check
 * stitch_graph.c   in-memory identifier graph: interning and union-find
 * stitch_apply.c   locking, entity id assignment and writing changes
 * stitch_trigger.c the statement triggers on the events table
 * stitch_full.c    restitch() and verify_stitching()
 * explain.c        the identifiers behind one entity (explain_entity)
 * stitch_bridges.c the identifiers that alone hold entities together
 *                  (bridging_identifiers)
 * attach.c         attach_events() and detach_events()
 * events_view.c    customer_events, following the events table's columns
 * ddl_guard.c      event triggers around DDL: CASCADE drops keep the
 *                  extension; calls the two below
 * rule_guard.c     a drop or rename that would leave a stitching rule
 *                  unable to compile is refused
 * partition_drop.c dropped partitions of the events table leave stitching
 * event_key.c      the stored form of uuid event ids
 * exec.c           running SQL as the extension owner with a pinned
 *                  search_path, and SPI helpers
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_STITCH_H
#define CDP_STITCH_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/params.h"
#include "tcop/cmdtag.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

/* search_path every SQL statement of the extension runs with */
#define CDP_SEARCH_PATH "pg_catalog, cdp_traits, pg_temp"

/*
 * Identifier values longer than this (in bytes) never link: they are
 * dropped like blocklisted values.  matching's primary key holds the
 * attribute id and the value in one btree entry, which may not exceed 2704
 * bytes (a third of a page); 2000 bytes leave room for the attribute id and
 * the entry's overhead whether or not the value compresses.
 */
#define CDP_MAX_IDENTIFIER_BYTES 2000

/*
 * The most bytes of a stitching rule's attribute_id: with a value of
 * CDP_MAX_IDENTIFIER_BYTES that does not compress, matching's index entry
 * still fits (a 700-byte attribute id made such an event's insert fail).
 */
#define CDP_MAX_RULE_ATTRIBUTE_BYTES 255

/* names of the transition tables of the events triggers */
#define CDP_NEW_TABLE "cdp_new_events"
#define CDP_OLD_TABLE "cdp_old_events"

/*
 * The triggers of replica sessions (attach.c): their names begin with this,
 * those of the statement triggers do not.
 */
#define CDP_REPLICA_TRIGGER_PREFIX "cdp_traits_stitch_replica"

/* ---- exec.c ---- */
typedef struct CdpExecState
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} CdpExecState;

/*
 * Tables whose size kept plans depend on (see cdp_growth_generation): the
 * names in the extension's schema, and what the watch last saw.
 */
#define CDP_GROWTH_MAX_TABLES 4

typedef struct CdpGrowthWatch
{
	const char *const *tables;
	int			ntables;		/* at most CDP_GROWTH_MAX_TABLES */
	bool		looked;			/* planned_blocks filled */
	int64		planned_blocks[CDP_GROWTH_MAX_TABLES];
	uint64		generation;
	TimestampTz last_check;
} CdpGrowthWatch;

#define CDP_GROWTH_WATCH(tables) {tables, lengthof(tables), false, {0}, 1, 0}

extern Oid	cdp_extension_owner(void);
extern uint64 cdp_growth_generation(CdpGrowthWatch *watch);
extern int	cdp_plan_probes(SPIPlanPtr plan);
struct TriggerData;
struct Trigger;
extern bool cdp_trigger_not_this_session(struct TriggerData *td, const char *replica_prefix);
extern void cdp_row_as_statement(struct TriggerData *row, const char *newtable,
								 const char *oldtable, struct TriggerData *stmt,
								 struct Trigger *trig);
extern void cdp_row_statement_end(struct TriggerData *stmt);
extern int	cdp_plan_generation(SPIPlanPtr plan);
extern void cdp_exec_begin(CdpExecState *state);
extern void cdp_exec_pin_rule_settings(void);
extern void cdp_exec_end(CdpExecState *state);
extern void cdp_push_caller_snapshot(void);
extern SPIPlanPtr cdp_prepare(const char *sql, int nargs, Oid *argtypes);
extern int	cdp_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
						int expected, const char *what);
extern int	cdp_execute_sql(const char *sql, int expected, const char *what);
extern ErrorData *cdp_in_subtransaction(void (*fn) (void *arg), void *arg);

/* ---- stitch_config.c ---- */
typedef struct StitchConfig
{
	Oid			events_relid;	/* InvalidOid: no events table known */
	bool		attached;
	Oid			id_type;
	char	   *events_name;	/* quoted, schema-qualified */
	const char *key_of;			/* SQL: an id's key in event_entities (%s: the id) */
	const char *id_of;			/* SQL: a key's id (%s: the key) */
	int			nrules;
	bool		unique_id;		/* a unique index guarantees unique ids */
	bool		id_is_uuid;		/* ids are read raw and formatted in C */
	bool		uuid_keys;		/* ... as their keys (event_key.c), else as
								 * text (events_source.uuid_keys) */
	uint64		generation;		/* bumped on every invalidation */

	/* attribute ids the rules produce */
	int			nattrs;
	char	  **attrs;
	/* rule columns of the compiled query: attribute, and text[] or text */
	int			ncols;
	int		   *col_attr;
	bool	   *col_is_set;
	char	   *cols_sql;		/* ", col1, col2 ..." over the event "ev" */
	char	   *columns_problem;	/* what is wrong with the table's columns
									 * (stitch_columns_problems), or NULL */
	char	   *owner_problem;	/* who owns it or its partitions, or what
								 * they are (stitch_owner_problems), or NULL */
	List	   *members;		/* the table and its inheritors */
	/* rules that do not compile (left out; see stitch_check_rules) */
	int			nbroken;
	const char *broken_attr;	/* the first one's attribute id, */
	const char *broken_expr;	/* value_expression, */
	const char *broken_problem; /* error message */
	int			broken_code;	/* and SQLSTATE */
	char	   *broken_list;	/* every one, a line each */
	/* blocklist, trimmed (stitch_trim) and lower-cased; attr -1 = any */
	int			nblocked;
	bool		blocked_first[256];	/* first bytes of blocked values */
	char	  **blocked;
	int		   *blocked_attr;
	int			max_blocked_len;
} StitchConfig;

/* What a prepared statement reads its events from. */
typedef enum StitchSource
{
	SRC_NEW_ROWS,				/* the NEW transition table */
	SRC_OLD_ROWS,				/* the OLD transition table */
	SRC_ALL_EVENTS,				/* the whole events table + old assignment */
	SRC_ENTITY_EVENTS,			/* events of the entities in $1 (uuid[]) */
	SRC_NEW_ROWS_LIVE,			/* the NEW rows still in the events table and
								 * not stitched yet (see stitch_trigger.c) */
	SRC_NEW_ROWS_CURRENT		/* the events table's rows with the ids of
								 * the NEW rows, as they are now (ditto) */
} StitchSource;

extern StitchConfig *stitch_config(bool missing_ok);
extern StitchConfig *stitch_rules_config(void);
extern void stitch_check_rules(StitchConfig *cfg);
extern void stitch_append_broken_rule(StringInfo buf, const char *attr, const char *expr,
									  const char *problem);
extern Oid	stitch_source(Oid *idtype, bool *attached);
extern char *stitch_rule_problem(const char *expr, Oid idtype);
extern SPIPlanPtr stitch_explain_plan(void);
extern SPIPlanPtr stitch_identifier_plan(StitchSource source, Oid relid);
extern SPIPlanPtr stitch_cached_plan(const char *key, const char *sql,
									 int nargs, Oid *argtypes);
extern SPIPlanPtr stitch_probe_plan(const char *key, const char *sql, int nargs,
									Oid *argtypes);
extern void stitch_invalidate(void);
extern uint64 stitch_generation(void);
extern void stitch_register_callbacks(void);
extern void stitch_config_pin(void);
extern void stitch_config_unpin(void);
extern char *stitch_identifier_sql(StitchSource source);
extern char *stitch_all_events_sql_except(List *leaves);
extern char *stitch_not_from_sql(const char *tableoid, List *leaves);
extern char *stitch_relation_sql(Oid relid);
extern char *stitch_explain_sql(void);
extern bool stitch_keys_recorded(void);
extern bool stitch_states_kept(void);
extern const char *stitch_key_format(Oid idtype, bool uuid_keys);
extern const char *stitch_id_format(Oid idtype, bool uuid_keys);
extern const char *stitch_id_type_problem(Oid idtype);
extern Oid	stitch_columns_problems(Oid relid, StringInfo buf);
extern bool stitch_has_view_column(Oid relid);
extern void stitch_view_column_problem(Oid relid, StringInfo buf);
extern List *stitch_owner_problems(Oid relid, StringInfo buf);

/* what to do when the events table's owner is not trusted */
#define STITCH_OWNER_HINT \
	"Stitching, the worker and readers query the events table as other roles, the extension's " \
	"owner among them, and its owner can make their queries run functions of its own. Give the " \
	"table and its partitions to a role that may act as the extension's owner (ALTER TABLE ... " \
	"OWNER TO ...), or make their owner a member of cdp_traits_admin."
extern void stitch_check_columns(StitchConfig *cfg, bool ddl);
extern char *stitch_key_sql(StitchConfig *cfg, const char *id);
extern char *stitch_id_sql(StitchConfig *cfg, const char *key);
extern const char *stitch_display_id(StitchConfig *cfg, const char *key);

/* ---- stitch_read.c ---- */

/* One event read by the identifier query. */
typedef struct EventRow
{
	const char *event_id;		/* NULL: the stored event no longer exists */
	int			event_id_len;
	const char *stored_id;		/* event_entities.event_id, if any */
	int			stored_id_len;
	const pg_uuid_t *old_entity;	/* stored entity, NULL if none */
	int			nidents;		/* identifiers (NULL/blocklisted dropped) */
	const int  *attr;			/* index into StitchConfig.attrs */
	const char **val;
	const int  *len;
} EventRow;

typedef void (*EventRowCallback) (EventRow *row, void *arg);

typedef void (*SlotCallback) (TupleTableSlot *slot, void *arg);

#define UUID_TEXT_LEN 36
#define EVENT_KEY_LEN 22		/* see event_key.c */

extern void cdp_stream(SPIPlanPtr plan, ParamListInfo params, bool read_only,
					   SlotCallback callback, void *arg);
extern ParamListInfo cdp_uuid_array_param(Datum arr);
extern void cdp_uuid_to_text(const pg_uuid_t *u, char *buf);

/* ---- event_key.c ---- */
extern void cdp_uuid_to_key(const pg_uuid_t *u, char *buf);
extern bool cdp_key_to_uuid(const char *s, int len, pg_uuid_t *u);
extern void stitch_read_skip(List *leaves);
extern void stitch_read_events(StitchSource source, Oid relid, Datum entities,
							   bool read_only, EventRowCallback callback,
							   void *arg);
extern void stitch_read_plan(SPIPlanPtr plan, bool with_stored, ParamListInfo params,
							 bool read_only, EventRowCallback callback, void *arg);
extern bool stitch_is_events_relation(StitchConfig *cfg, Oid relid);
extern bool stitch_is_events_relid(Oid events_relid, Oid relid);
extern const char **stitch_read_ids(SPIPlanPtr plan, int *n);
/*
 * stitch_blank
 *		The ASCII characters the blocklist trims from both ends of entries and
 *		values: space, tab, line feed, carriage return, vertical tab and form
 *		feed (ASCII white space, as isspace() in the C locale).  In a UTF-8
 *		database stitch_trim() trims Unicode spaces and invisible marks too.
 */
static inline bool
stitch_blank(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

extern void stitch_trim(const char **s, const char **e);
extern char *stitch_blocklist_lower(const char *s, int n, char *buf,
									 size_t bufsize);
extern bool stitch_is_blocked(StitchConfig *cfg, int attr, const char *val,
							  int len);

/* ---- stitch_graph.c ---- */
typedef struct StitchGraph StitchGraph;

/* A bump allocator for many small strings that die together. */
typedef struct StrArena
{
	MemoryContext cxt;
	char	   *ptr;
	Size		left;
} StrArena;

extern const char *arena_strdup(StrArena *a, const char *s, int len);

extern StitchGraph *graph_create(MemoryContext cxt, int expected_idents);
extern int	graph_add_event(StitchGraph *g, const char *event_id, int len,
							const pg_uuid_t *old_entity);
extern int	graph_add_identifier(StitchGraph *g, int event, const char *attr,
								 int attrlen, const char *val, int vallen);
extern void graph_set_attrs(StitchGraph *g, char **attrs, int nattrs);
extern int	graph_add_event_row(StitchGraph *g, EventRow *row, int32 *ids);
extern void graph_union(StitchGraph *g, int a, int b);
extern int	graph_find(StitchGraph *g, int node);
extern int	graph_nevents(StitchGraph *g);
extern int	graph_nidents(StitchGraph *g);
extern int	graph_lookup_identifier(StitchGraph *g, const char *attr, int attrlen,
									const char *val, int vallen);
extern int	graph_event_node(StitchGraph *g, int event);
extern const char *graph_event_id(StitchGraph *g, int event);
extern const pg_uuid_t *graph_event_old_entity(StitchGraph *g, int event);
extern void graph_identifier(StitchGraph *g, int ident, const char **attr,
							 const char **val);
extern int	graph_identifier_node(StitchGraph *g, int ident);
extern const int32 *graph_identifier_attrs(StitchGraph *g);
extern int	graph_entity_node(StitchGraph *g, const pg_uuid_t *entity);
extern int	graph_nnodes(StitchGraph *g);

/* ---- stitch_apply.c ---- */

/* What a stitching pass changes; written by stitch_write_changes. */
typedef struct StitchChanges
{
	pg_uuid_t  *new_entities;
	int			n_new_entities;
	pg_uuid_t  *merged;			/* absorbed entity ... */
	pg_uuid_t  *merged_into;	/* ... and its survivor */
	int			n_merged;
	pg_uuid_t  *removed;		/* entities left without events */
	int			n_removed;
	pg_uuid_t  *touched;		/* entities whose events changed */
	int			n_touched;
	const char **ident_attr;	/* new identifiers -> entity */
	const char **ident_val;
	pg_uuid_t  *ident_entity;
	int			n_idents;
	const char **upd_ident_attr;	/* stored identifiers moving entity */
	const char **upd_ident_val;
	pg_uuid_t  *upd_ident_entity;
	int			n_upd_idents;
	const char **del_ident_attr;	/* identifiers no event carries any more */
	const char **del_ident_val;
	int			n_del_idents;
	const char **event_ids;		/* newly assigned events -> entity */
	pg_uuid_t  *event_entity;
	int			n_events;
	const char **upd_event_ids; /* stored events moving entity */
	pg_uuid_t  *upd_event_entity;
	int			n_upd_events;
	const char **del_events;	/* events that no longer have an entity */
	int			n_del_events;
	/* the table holds no rows: load it in bulk and build its indexes after */
	bool		bulk_entities;
	bool		bulk_idents;
	bool		bulk_events;
} StitchChanges;

/* Figures of a full pass (restitch/verify). */
typedef struct StitchResult
{
	int64		events;
	int64		identifiers;
	int64		entities;
	int64		changed_events;
	int64		changed_identifiers;
	Size		memory;
} StitchResult;

extern void stitch_analyze_after(const StitchResult *res);

extern void stitch_lock_global(bool exclusive);
extern void stitch_lock_events(StitchGraph *g);
extern void stitch_changes_init(StitchChanges *c, int nevents, int nidents,
								int nentities);
extern void stitch_write_changes(StitchChanges *c);
extern double stitch_table_size(const char *relname);
extern void stitch_batch(StitchGraph *g, const char **forget, int nforget,
						 const char **touch, int ntouch);
extern void stitch_forget_states(void);
extern void cdp_random_uuid(pg_uuid_t *uuid);
extern void cdp_random_uuids(pg_uuid_t *uuids, int n);
extern int	uuid_cmp_internal(const pg_uuid_t *a, const pg_uuid_t *b);
extern int	sort_unique_uuids(pg_uuid_t *ids, int n);
extern Datum cdp_text_array(const char **vals, int n);
extern Datum cdp_uuid_array(const pg_uuid_t *vals, int n);

/* ---- attach.c, events_view.c ---- */
extern void cdp_depend_on_extension(Oid classid, Oid objid);
extern char *events_view_select(const char *events_name, const char *key_of);
extern void events_view_create(const char *select_sql);
extern void events_view_follow(StitchConfig *cfg);
extern void events_view_rejoin(StitchConfig *cfg, const char *key_of);
extern void events_view_save_grants(void);
extern void events_view_restore_grants(void);
struct AlterTableStmt;
extern bool events_view_changes_columns(struct AlterTableStmt *stmt);
extern void events_view_before_alter(Oid relid, struct AlterTableStmt *stmt);

/* ---- ddl_guard.c, rule_guard.c ---- */
struct DropStmt;
extern void ddl_guard_pause(bool pause);
extern bool cdp_drops_extension(struct DropStmt *stmt);
struct Node;
extern void *rules_ddl_start(struct Node *parsetree);
extern void rules_ddl_end(void *baseline, CommandTag tag);

/* ---- stitch_full.c ---- */
extern void stitch_scope(const pg_uuid_t *entities, int nentities, bool write,
						 Tuplestorestate *problems, StitchResult *result);
extern void stitch_truncate(void);
extern void stitch_partitions_left(void);

/* ---- partition_drop.c ---- */
extern void *stitch_drop_start(struct Node *parsetree);
extern void stitch_lock_events_first(void);
extern void stitch_drop_end(void *watch);
extern void stitch_detach_start(struct Node *parsetree);
extern bool stitch_rows_stitched(StitchConfig *cfg, Oid relid);

#endif							/* CDP_STITCH_H */
