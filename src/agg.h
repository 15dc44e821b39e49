/*-------------------------------------------------------------------------
 *
 * agg.h
 *		The attribute-calculation aggregates (SPEC section 3): their state
 *		type cdp_traits.agg_state and what the agg_*.c files share.
 *
 * Every aggregate but any_value keeps its transition state in one varlena
 * of type cdp_traits.agg_state.  Being a real type (not "internal"), the
 * state travels between parallel workers as it is, can be stored (the
 * *_state aggregates and merge_states), and lets Citus combine partial
 * aggregates of single-argument aggregates on the coordinator.
 *
 * In memory the state is one palloc'd chunk: a fixed header followed by
 * entries.  Its varlena size is the chunk's capacity; "used" says how much
 * of it holds data, so values are appended in place and the transition
 * function returns the same pointer (no copy by the executor).  Only when
 * the chunk is full is a bigger one built, and then nodeAgg copies it into
 * the aggregate context and frees the old one.
 *
 * Kinds and their entries:
 *
 *	 AGG_KIND_FREQUENCY  float8 total weight + value, for most/least_frequent
 *						 (a small state of counts: uint32 count + value)
 *	 AGG_KIND_DISTINCT	 value, for num_of_unique and unique_list
 *	 AGG_KIND_FIRST		 int64 timestamp + value (one entry), for first
 *	 AGG_KIND_LAST		 int64 timestamp + value (one entry), for last
 *
 * First/last entries are MAXALIGNed and hold a value as a datum image (a
 * whole Datum for by-value types).  Multiset entries (frequency, distinct)
 * are packed, to touch as few cache lines per row as possible: the weight
 * is stored unaligned, a by-value value as its typlen bytes, a varlena with
 * a short header when it fits one (unaligned, as in heap tuples), and only
 * 4-byte-header varlenas and fixed-length types that need it are aligned,
 * with zero padding before them (agg_multiset_state.c).
 *
 * Multisets start small: distinct entries found by a linear scan, in a
 * 64-byte chunk (256 bytes once most states of the query have outgrown 64,
 * see multiset_new), with uint32 counts instead of float8 weights while the
 * weights are counts (AGG_FLAG_COUNTS).  Past a
 * few dozen values they keep a sorted, duplicate-free prefix of entries (up
 * to sorted_end) and an unsorted tail of new values; when the chunk fills up
 * the tail is sorted and merged into the prefix, equal values collapsing
 * into one entry with the summed weight, so memory is bounded by the number
 * of distinct values rather than of rows.
 *
 * This in-memory image is trusted: only the functions of this extension
 * make one.  From outside a state enters only through the type's input
 * and receive functions, which read a portable format (agg_io.c) and
 * validate every byte.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_AGG_H
#define CDP_AGG_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/memutils.h"
#include "utils/sortsupport.h"

/* version of the in-memory image (checked on every access) */
#define AGG_STATE_VERSION	1

typedef enum AggKind
{
	AGG_KIND_FREQUENCY = 1,
	AGG_KIND_DISTINCT = 2,
	AGG_KIND_FIRST = 3,
	AGG_KIND_LAST = 4
} AggKind;

#define AGG_KIND_IS_MULTISET(k) \
	((k) == AGG_KIND_FREQUENCY || (k) == AGG_KIND_DISTINCT)

typedef struct CdpAggState
{
	int32		vl_len_;		/* varlena header: the capacity */
	uint8		version;		/* AGG_STATE_VERSION */
	uint8		kind;			/* AggKind */
	uint8		flags;			/* AGG_FLAG_* */
	uint8		padding;
	Oid			typid;			/* type of the values (a base type) */
	Oid			collid;			/* collation they are compared with */
	uint32		used;			/* bytes holding data, header included */
	uint32		nitems;			/* entries */
	uint32		sorted_end;		/* end of the sorted, distinct prefix */
} CdpAggState;

/*
 * A small multiset (few distinct values) has no sorted prefix: its entries
 * are distinct, unsorted, found by a linear scan, and a value whose weight
 * grows past its predecessor's moves one step ahead, so that the common
 * values sit in the first cache line.
 */
#define AGG_FLAG_SMALL		0x01

/*
 * A small frequency state whose weights are all counts (whole numbers, as
 * the unweighted aggregates add) stores them as uint32 instead of float8:
 * a state of 20 short text values then fits 256 bytes instead of 512.  It
 * is converted to float8 weights when a weight that is not a count comes,
 * a count would overflow, or the state becomes large; packed states never
 * hold counts, so stored states are as before.
 */
#define AGG_FLAG_COUNTS		0x02

#define AGG_HEADER_SIZE		MAXALIGN(sizeof(CdpAggState))
#define AGG_CAPACITY(s)		((Size) VARSIZE(s))
#define AGG_MAX_SIZE		((Size) MaxAllocSize)

/*
 * Entry formats, named by the size of the prefix before an entry's value:
 * none (distinct), a uint32 count or a float8 weight (frequency).
 */
#define AGG_FMT_PLAIN		0
#define AGG_FMT_COUNT		4
#define AGG_FMT_WEIGHT		8

/* the entry format of a state, and of a kind's large or packed states */
#define AGG_KIND_FORMAT(kind) \
	((kind) == AGG_KIND_DISTINCT ? AGG_FMT_PLAIN : AGG_FMT_WEIGHT)
#define AGG_FORMAT(s) \
	(((s)->flags & AGG_FLAG_COUNTS) ? AGG_FMT_COUNT : AGG_KIND_FORMAT((s)->kind))

/* a multiset entry read out of a state, while sorting and merging */
typedef struct AggItem
{
	Datum		value;			/* the value (pointer into the state if byref) */
	float8		weight;			/* frequency: total weight */
} AggItem;

typedef struct AggRankCache AggRankCache;

/*
 * How values of one type are stored and compared, cached in fn_extra of the
 * calling function (a short list, most recently used first: see
 * agg_type_info), with scratch space reused between calls.
 */
typedef struct AggTypeInfo
{
	Oid			typid;			/* as declared (may be a domain) */
	Oid			basetypid;		/* what the state stores */
	Oid			collid;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	bool		packable;		/* short varlena headers allowed */
	uint8		alignby;		/* typalign in bytes */
	bool		equalimage;		/* equal values have equal images */
	SortSupportData ssup;
	Oid			hint_typid;		/* result type already checked against it */
	bool		hint_domain;	/* ... and it is a domain */
	void	   *domain_extra;	/* domain_check's cache */
	bool		io_ready;		/* ioproc and typioparam are set */
	char	   *io_names;		/* type and collation as in the portable form */
	int			io_names_len;	/* ... (agg_io.c), or NULL and 0 */
	FmgrInfo	ioproc;			/* send or receive function (agg_io.c) */
	Oid			typioparam;
	AggRankCache *ranks;		/* ranks of values met (agg_rank.c), or NULL */
	uint32		states_made;	/* multisets begun since start_size was set */
	uint32		states_grown;	/* ... and how often small ones grew */
	Size		start_size;		/* bytes a new multiset starts with, or 0 */
	MemoryContext cxt;			/* this entry's own context (under fn_mcxt):
								 * the scratch, ranks, I/O lookups */
	struct AggTypeInfo *next;	/* next entry of fn_extra's list (agg_state.c) */
	AggItem    *items;
	Size		items_cap;
	char	   *scratch;
	Size		scratch_cap;
} AggTypeInfo;

/* agg_state.c: type lookup, the in-memory image, first/last, combine */
extern AggTypeInfo *agg_type_info(FunctionCallInfo fcinfo, Oid typid, Oid collid);
extern AggTypeInfo *agg_input_type_info(FunctionCallInfo fcinfo, int argno);
extern void agg_check_hint(FunctionCallInfo fcinfo, AggTypeInfo *info, int argno);
extern Oid	agg_result_type(AggTypeInfo *info);
extern void agg_result_check(AggTypeInfo *info, Datum value);
extern void agg_check_context(FunctionCallInfo fcinfo, const char *what);
extern CdpAggState *agg_state_arg(FunctionCallInfo fcinfo, int argno);
extern CdpAggState *agg_state_arg_inplace(FunctionCallInfo fcinfo, int argno);
extern void agg_state_check(const CdpAggState *state);
extern const char *agg_kind_name(int kind);
extern Size agg_value_size(AggTypeInfo *info, Datum value, Datum *image);
extern void agg_store_value(AggTypeInfo *info, char *dst, Datum image, Size size);
extern Datum agg_entry_value(AggTypeInfo *info, char *ptr);
extern bool agg_same_image(AggTypeInfo *info, Datum stored, Datum image);
extern Datum agg_result_value(AggTypeInfo *info, Datum value);
extern Size agg_capacity_for(Size need, Size min);
extern CdpAggState *agg_state_new(AggTypeInfo *info, int kind, Size need);
extern CdpAggState *agg_state_copy_cap(const CdpAggState *state, Size cap);
extern CdpAggState *agg_state_copy(const CdpAggState *state, Size need);
extern CdpAggState *agg_state_pack_copy(AggTypeInfo *info, CdpAggState *state);
extern AggItem *agg_items_reserve(AggTypeInfo *info, Size n);
extern char *agg_scratch_reserve(AggTypeInfo *info, Size size);
extern CdpAggState *agg_pick_set(AggTypeInfo *info, CdpAggState *state,
								 int kind, int64 at, Datum value);
extern bool agg_pick_better(AggTypeInfo *info, CdpAggState *state, int64 at,
							Datum value);
extern CdpAggState *agg_pick_union(AggTypeInfo *info, CdpAggState *state,
								   CdpAggState *other);
extern int64 agg_pick_at(CdpAggState *state);
extern Datum agg_pick_value(AggTypeInfo *info, CdpAggState *state);

/* agg_rank.c: ranks of recurring values */
extern int	agg_rank_entry(AggTypeInfo *info, Datum value);
extern uint32 agg_rank_of(AggTypeInfo *info, int entry);

/* agg_multiset_state.c: frequency and distinct states */
extern char *agg_entry_read(AggTypeInfo *info, int fmt, char *p,
							Datum *value, float8 *weight);
extern CdpAggState *agg_multiset_add(AggTypeInfo *info, CdpAggState *state,
									 int kind, Datum value, float8 weight);
extern CdpAggState *agg_multiset_union(AggTypeInfo *info, CdpAggState *state,
									   CdpAggState *other);
extern AggItem *agg_multiset_sorted(AggTypeInfo *info, CdpAggState *state,
									uint32 *count);
extern CdpAggState *agg_multiset_pack(AggTypeInfo *info, CdpAggState *state);

#endif							/* CDP_AGG_H */
