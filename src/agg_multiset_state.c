/*-------------------------------------------------------------------------
 *
 * agg_multiset_state.c
 *		Frequency and distinct states: the multiset of a group's values,
 *		with their total weights for a frequency state.
 *
 * Entries are packed (agg.h): [float8 weight or uint32 count, unaligned,
 * frequency only] then the value:
 *
 *	 by-value types			typlen bytes, unaligned (copied in and out)
 *	 varlena, short header	as in heap tuples, unaligned
 *	 varlena, 4-byte header zero padding to typalign, then the varlena
 *	 fixed-length by-ref	padding to typalign, then typlen bytes
 *	 cstring				unaligned, NUL-terminated
 *
 * A varlena is read as heap tuples are (att_align_pointer): a zero byte
 * where a value starts is padding, because a short header is never zero and
 * a 4-byte header is always aligned.  Offsets are relative to the state's
 * start, which is MAXALIGNed, so alignment in a state equals alignment in
 * memory.  Moving an entry to another offset may change its padding, so
 * entries are copied between states by reading and writing them again.
 *
 * A state starts small: distinct values, unsorted, found by a linear scan
 * (comparing bytes when equal values of the type have equal bytes, the
 * comparator otherwise).  A hit adds the weight and moves the entry one
 * place ahead when it outweighs its predecessor (unique states: on every
 * hit), so frequent values are found in the first cache line.  Past
 * AGG_SMALL_ITEMS values or AGG_SMALL_BYTES it becomes large: its entries
 * become the unsorted tail, new values are appended, and a full chunk is
 * compacted (the tail sorted, equal values collapsed, merged into the sorted
 * prefix) and doubled only if it is still more than half full.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"

#include "agg.h"

/* agg_sort_items(items, n, ssup): sort AggItems by value */
#define ST_SORT agg_sort_items
#define ST_ELEMENT_TYPE AggItem
#define ST_COMPARE_ARG_TYPE SortSupportData
#define ST_COMPARE(a, b, ssup) \
	ApplySortComparator((a)->value, false, (b)->value, false, (ssup))
#define ST_SCOPE static
#define ST_CHECK_FOR_INTERRUPTS
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * A multiset stays small up to this many distinct values (fewer when
 * equality needs the comparator) and bytes of entries.
 */
#define AGG_SMALL_ITEMS				32
#define AGG_SMALL_ITEMS_COMPARATOR	8
#define AGG_SMALL_BYTES				1024

/*
 * A small multiset that outgrows its first chunk gets at least this much:
 * chunks freed by growing states are rarely reused (all groups grow at
 * about the same pace), so every intermediate size would be lost memory.
 */
#define AGG_SMALL_GROWN				256

/*
 * New multisets start in AGG_MIN_STATE bytes; when most of a query's grow
 * anyway (AGG_START_GROWN of every AGG_START_SAMPLE begun), later ones
 * start with AGG_SMALL_GROWN, which saves each a copy (two, counting the
 * executor's) and leaves no outgrown chunks behind.
 */
#define AGG_START_SAMPLE			128
#define AGG_START_GROWN				96

/* entries moved ahead in a small multiset are at most this big */
#define AGG_TRANSPOSE_MAX			64

/* a value ready to be written into an entry */
typedef struct AggImage
{
	Datum		datum;			/* by-value: the value; else its bytes */
	Size		size;			/* bytes it takes (without padding) */
	bool		aligned;		/* must start at a typalign boundary */
} AggImage;

/*
 * image_of
 *		How a value is written into a multiset entry: detoasted, a varlena
 *		with a short header when the type allows and it fits.
 */
static inline AggImage
image_of(AggTypeInfo *info, Datum value)
{
	AggImage	img;
	struct varlena *v;

	img.datum = value;
	img.aligned = false;
	if (info->typbyval)
	{
		img.size = info->typlen;
		return img;
	}
	if (info->typlen > 0)
	{
		img.size = info->typlen;
		img.aligned = (info->alignby > 1);
		return img;
	}
	if (info->typlen == -2)
	{
		img.size = strlen(DatumGetCString(value)) + 1;
		return img;
	}
	v = (struct varlena *) DatumGetPointer(value);
	if (VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v))
	{
		v = pg_detoast_datum_packed(v);
		img.datum = PointerGetDatum(v);
	}
	if (VARATT_IS_SHORT(v))
		img.size = VARSIZE_SHORT(v);
	else if (info->packable && VARATT_CAN_MAKE_SHORT(v))
		img.size = VARATT_CONVERTED_SHORT_SIZE(v);
	else
	{
		img.size = VARSIZE(v);
		img.aligned = (info->alignby > 1);
	}
	return img;
}

/*
 * entry_space
 *		Most bytes an entry for img takes, wherever it is written.
 */
static inline Size
entry_space(AggTypeInfo *info, int fmt, AggImage *img)
{
	return fmt + img->size +
		(img->aligned ? info->alignby - 1 : 0);
}

/*
 * byval_read
 *		The Datum of a by-value value stored as typlen bytes at p.
 */
static inline Datum
byval_read(const char *p, int16 typlen)
{
	switch (typlen)
	{
		case 1:
			return CharGetDatum(*p);
		case 2:
			{
				int16		v;

				memcpy(&v, p, sizeof(v));
				return Int16GetDatum(v);
			}
		case 4:
			{
				int32		v;

				memcpy(&v, p, sizeof(v));
				return Int32GetDatum(v);
			}
		default:
			{
				int64		v;

				memcpy(&v, p, sizeof(v));
				return Int64GetDatum(v);
			}
	}
}

/*
 * byval_write
 *		Store a by-value Datum as typlen bytes at p.
 */
static inline void
byval_write(char *p, Datum d, int16 typlen)
{
	switch (typlen)
	{
		case 1:
			*p = DatumGetChar(d);
			break;
		case 2:
			{
				int16		v = DatumGetInt16(d);

				memcpy(p, &v, sizeof(v));
				break;
			}
		case 4:
			{
				int32		v = DatumGetInt32(d);

				memcpy(p, &v, sizeof(v));
				break;
			}
		default:
			{
				int64		v = DatumGetInt64(d);

				memcpy(p, &v, sizeof(v));
				break;
			}
	}
}

/*
 * value_start
 *		Where the value stored from p on starts (skipping padding).
 */
static inline char *
value_start(AggTypeInfo *info, char *p)
{
	if (info->typbyval || info->typlen == -2)
		return p;
	if (info->typlen == -1 && *p != 0)
		return p;				/* a short header */
	return (char *) TYPEALIGN(info->alignby, p);
}

/*
 * value_read
 *		The value stored from p on; returns where it ends.
 */
static inline char *
value_read(AggTypeInfo *info, char *p, Datum *value)
{
	if (info->typbyval)
	{
		*value = byval_read(p, info->typlen);
		return p + info->typlen;
	}
	p = value_start(info, p);
	*value = PointerGetDatum(p);
	if (info->typlen > 0)
		return p + info->typlen;
	if (info->typlen == -1)
		return p + VARSIZE_ANY(p);
	return p + strlen(p) + 1;
}

/*
 * agg_entry_read
 *		The value and weight of the entry at p (of entry format fmt); returns
 *		where the next entry starts.
 */
char *
agg_entry_read(AggTypeInfo *info, int fmt, char *p, Datum *value,
			   float8 *weight)
{
	if (fmt == AGG_FMT_WEIGHT)
		memcpy(weight, p, sizeof(float8));
	else if (fmt == AGG_FMT_COUNT)
	{
		uint32		c;

		memcpy(&c, p, sizeof(uint32));
		*weight = (float8) c;
	}
	else
		*weight = 0;
	return value_read(info, p + fmt, value);
}

/*
 * entry_write
 *		Write an entry of format fmt at dst (a count: weight is one, see
 *		weight_is_count); returns where it ends.
 */
static inline char *
entry_write(AggTypeInfo *info, int fmt, char *dst, AggImage *img,
			float8 weight)
{
	if (fmt == AGG_FMT_WEIGHT)
		memcpy(dst, &weight, sizeof(float8));
	else if (fmt == AGG_FMT_COUNT)
	{
		uint32		c = (uint32) weight;

		memcpy(dst, &c, sizeof(uint32));
	}
	dst += fmt;
	if (img->aligned)
	{
		char	   *start = (char *) TYPEALIGN(info->alignby, dst);

		memset(dst, 0, start - dst);
		dst = start;
	}
	if (info->typbyval)
		byval_write(dst, img->datum, info->typlen);
	else if (info->typlen == -1)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(img->datum);

		if (!VARATT_IS_SHORT(v) && img->size < VARSIZE(v))
		{
			/* convert to a short header, as heap_fill_tuple does */
			SET_VARSIZE_SHORT(dst, img->size);
			memcpy(dst + VARHDRSZ_SHORT, VARDATA(v), img->size - VARHDRSZ_SHORT);
		}
		else
			memcpy(dst, v, img->size);
	}
	else
		memcpy(dst, DatumGetPointer(img->datum), img->size);
	return dst + img->size;
}

/*
 * weight_is_count
 *		Whether a weight can be added to a count: a whole number from 0 to
 *		PG_UINT32_MAX (not -0, whose sign a sum of float8s would keep).
 */
static inline bool
weight_is_count(float8 weight)
{
	return weight == 1.0 ||
		(weight >= 0 && weight <= PG_UINT32_MAX && !signbit(weight) &&
		 weight == (float8) (uint32) weight);
}

/*
 * weight_add
 *		Add to the weight of the frequency entry at p (of format fmt: for a
 *		count, weight must be one, see weight_is_count).  False, changing
 *		nothing, if the count would overflow.
 */
static inline bool
weight_add(char *p, int fmt, float8 weight)
{
	if (fmt == AGG_FMT_COUNT)
	{
		uint32		c;

		memcpy(&c, p, sizeof(uint32));
		if (c > PG_UINT32_MAX - (uint32) weight)
			return false;
		c += (uint32) weight;
		memcpy(p, &c, sizeof(uint32));
	}
	else
	{
		float8		w;

		memcpy(&w, p, sizeof(float8));
		w += weight;
		memcpy(p, &w, sizeof(float8));
	}
	return true;
}

/*
 * weight_get
 *		The weight of the frequency entry at p (of format fmt).
 */
static inline float8
weight_get(char *p, int fmt)
{
	if (fmt == AGG_FMT_COUNT)
	{
		uint32		c;

		memcpy(&c, p, sizeof(uint32));
		return (float8) c;
	}
	else
	{
		float8		w;

		memcpy(&w, p, sizeof(float8));
		return w;
	}
}

/*
 * small_equal
 *		Whether a stored value equals image (an AggImage's datum): same
 *		bytes, or for types whose equal values may differ in their bytes
 *		(numeric, float, nondeterministic collations), the comparator says
 *		so.
 */
static inline bool
small_equal(AggTypeInfo *info, Datum stored, Datum image)
{
	if (agg_same_image(info, stored, image))
		return true;
	if (info->equalimage)
		return false;
	return ApplySortComparator(stored, false, image, false, &info->ssup) == 0;
}

/*
 * movable
 *		Whether the entry at e can move to another offset as it is (its
 *		value needs no alignment).
 */
static inline bool
movable(AggTypeInfo *info, int fmt, char *e)
{
	char	   *v = e + fmt;

	if (info->typbyval || info->typlen == -2 || info->alignby == 1)
		return true;
	if (info->typlen == -1)
		return *v != 0 && VARATT_IS_1B(v);
	return false;
}

/*
 * transpose
 *		Swap the adjacent entries a and b (b right after a, ending at end),
 *		if both can move and a is not big.
 */
static inline void
transpose(AggTypeInfo *info, int fmt, char *a, char *b, char *end)
{
	char		tmp[AGG_TRANSPOSE_MAX];
	Size		sa = b - a;
	Size		sb = end - b;

	if (sa > AGG_TRANSPOSE_MAX || !movable(info, fmt, a) ||
		!movable(info, fmt, b))
		return;
	memcpy(tmp, a, sa);
	memmove(a, b, sb);
	memcpy(a + sb, tmp, sa);
}

/*
 * small_locate
 *		Find a value in a small multiset: the entry holding it, or NULL.
 *		*prev gets the entry before it (NULL if none), *next where it ends.
 *		The loops for equal-image varlenas (text with a deterministic
 *		collation) and by-value types are the hot paths and are spelled out.
 */
static inline char *
small_locate(AggTypeInfo *info, CdpAggState *state, AggImage *img,
			 char **prev, char **next)
{
	Size		prefix = AGG_FORMAT(state);
	char	   *p = (char *) state + AGG_HEADER_SIZE;
	char	   *end = (char *) state + state->used;

	*prev = NULL;
	if (info->equalimage && info->typlen == -1)
	{
		char	   *data = VARDATA_ANY(DatumGetPointer(img->datum));
		Size		len = VARSIZE_ANY_EXHDR(DatumGetPointer(img->datum));

		while (p < end)
		{
			char	   *v = value_start(info, p + prefix);
			char	   *e = v + VARSIZE_ANY(v);

			if (VARSIZE_ANY_EXHDR(v) == len &&
				(len == 0 || (VARDATA_ANY(v)[0] == data[0] &&
							  memcmp(VARDATA_ANY(v), data, len) == 0)))
			{
				*next = e;
				return p;
			}
			*prev = p;
			p = e;
		}
		return NULL;
	}
	if (info->equalimage && info->typbyval)
	{
		Size		esize = prefix + info->typlen;
		char		bytes[sizeof(Datum)];

		byval_write(bytes, img->datum, info->typlen);
		for (; p < end; p += esize)
		{
			if (memcmp(p + prefix, bytes, info->typlen) == 0)
			{
				*next = p + esize;
				return p;
			}
			*prev = p;
		}
		return NULL;
	}
	while (p < end)
	{
		Datum		stored;
		char	   *e = value_read(info, p + prefix, &stored);

		if (small_equal(info, stored, img->datum))
		{
			*next = e;
			return p;
		}
		*prev = p;
		p = e;
	}
	return NULL;
}

/*
 * small_find
 *		Look a value up in a small multiset; if it is there, add the weight
 *		(frequency) and move it one place ahead when it now weighs more than
 *		its predecessor (unique states: on every hit), and return 1; 0 if it
 *		is not there; -1 if it is but its count would overflow (nothing
 *		changed).
 */
static int
small_find(AggTypeInfo *info, CdpAggState *state, AggImage *img, float8 weight)
{
	int			fmt = AGG_FORMAT(state);
	char	   *prev;
	char	   *next = NULL;
	char	   *p = small_locate(info, state, img, &prev, &next);

	if (p == NULL)
		return 0;
	if (state->kind == AGG_KIND_FREQUENCY)
	{
		if (!weight_add(p, fmt, weight))
			return -1;
		if (prev != NULL && weight_get(p, fmt) > weight_get(prev, fmt))
			transpose(info, fmt, prev, p, next);
	}
	else if (prev != NULL)
		transpose(info, fmt, prev, p, next);
	return 1;
}

/*
 * multiset_merge
 *		Sort the unsorted tail of a multiset state (all of a small one),
 *		collapse equal values (adding up their weights) and merge it with
 *		the sorted prefix.  Writes the resulting entries, distinct and in
 *		order, to info->scratch at the offsets they will have in a state
 *		(from AGG_HEADER_SIZE on), in the format of a large state of the
 *		kind (float8 weights, never counts), and returns their total size;
 *		*count gets their number.  The state is not changed.
 */
static Size
multiset_merge(AggTypeInfo *info, CdpAggState *state, uint32 *count)
{
	int			fmt = AGG_FORMAT(state);
	int			outfmt = AGG_KIND_FORMAT(state->kind);
	char	   *base = (char *) state;
	char	   *p = base + state->sorted_end;
	char	   *end = base + state->used;
	char	   *h = base + AGG_HEADER_SIZE;
	char	   *hend = p;
	AggItem    *tail;
	Size		ntail = 0;
	Size		i;
	Size		j;
	char	   *out;
	char	   *o;
	uint32		nout = 0;
	AggItem		head = {0};

	/* the tail's values, sorted, equal values collapsed */
	tail = agg_items_reserve(info, state->nitems);
	while (p < end)
	{
		AggItem    *item = &tail[ntail++];

		p = agg_entry_read(info, fmt, p, &item->value, &item->weight);
	}
	if (ntail > 1)
	{
		agg_sort_items(tail, ntail, &info->ssup);
		for (i = 1, j = 0; i < ntail; i++)
		{
			if (ApplySortComparator(tail[j].value, false, tail[i].value, false,
									&info->ssup) == 0)
				tail[j].weight += tail[i].weight;
			else
				tail[++j] = tail[i];
		}
		ntail = j + 1;
	}

	/*
	 * Merge with the prefix.  Rewritten entries may need other padding (at
	 * most alignby - 1 more bytes each) and counts become weights.
	 */
	out = agg_scratch_reserve(info, state->used + (Size) state->nitems *
							  (info->alignby - 1 + outfmt - fmt));
	o = out + AGG_HEADER_SIZE;
	if (h < hend)
		h = agg_entry_read(info, fmt, h, &head.value, &head.weight);
	else
		h = NULL;
	i = 0;
	while (h != NULL || i < ntail)
	{
		AggItem    *emit;
		AggImage	img;
		int			c;

		if (h == NULL)
			c = 1;
		else if (i >= ntail)
			c = -1;
		else
			c = ApplySortComparator(head.value, false, tail[i].value, false,
									&info->ssup);
		if (c <= 0)
		{
			emit = &head;
			if (c == 0)
				head.weight += tail[i++].weight;
		}
		else
			emit = &tail[i++];
		img = image_of(info, emit->value);
		o = entry_write(info, outfmt, o, &img, emit->weight);
		nout++;
		if (emit == &head)
		{
			if (h < hend)
				h = agg_entry_read(info, fmt, h, &head.value, &head.weight);
			else
				h = NULL;
		}
	}
	*count = nout;
	return o - (out + AGG_HEADER_SIZE);
}

/*
 * make_room
 *		Make room for need more bytes in a full large multiset: compact it,
 *		and if it is still more than half full, move it to a chunk at least
 *		twice as big (so that the next compaction is at least as many
 *		appends away as the state has entries: the sorting stays amortized
 *		O(log n) per value).  Returns the state, which may have moved.
 */
static CdpAggState *
make_room(AggTypeInfo *info, CdpAggState *state, Size need)
{
	Size		cap = AGG_CAPACITY(state);
	Size		newcap = cap;
	Size		used = state->used;
	Size		len = 0;
	uint32		count = 0;
	bool		merged = false;

	if (state->sorted_end < state->used)
	{
		len = multiset_merge(info, state, &count);
		used = AGG_HEADER_SIZE + len;
		merged = true;
	}
	while (used + need > newcap / 2 && newcap < AGG_MAX_SIZE)
		newcap = Min(newcap * 2, AGG_MAX_SIZE);
	if (used + need > newcap)
		(void) agg_capacity_for(used + need, 0);	/* raises the error */

	if (newcap != cap)
	{
		CdpAggState *bigger = palloc0(newcap);

		memcpy(bigger, state, merged ? AGG_HEADER_SIZE : state->used);
		SET_VARSIZE(bigger, newcap);
		state = bigger;
	}
	if (merged)
	{
		memcpy((char *) state + AGG_HEADER_SIZE,
			   info->scratch + AGG_HEADER_SIZE, len);
		state->used = used;
		state->sorted_end = used;
		state->nitems = count;
	}
	return state;
}

/*
 * counts_to_weights
 *		A copy of a small state of counts with float8 weights instead, with
 *		room for need more bytes.
 */
static CdpAggState *
counts_to_weights(AggTypeInfo *info, CdpAggState *state, Size need)
{
	char	   *p = (char *) state + AGG_HEADER_SIZE;
	char	   *end = (char *) state + state->used;
	Size		size = state->used + need + (Size) state->nitems *
		(AGG_FMT_WEIGHT - AGG_FMT_COUNT + info->alignby - 1);
	Size		cap = agg_capacity_for(size, AGG_SMALL_GROWN);
	CdpAggState *copy = palloc0(cap);
	char	   *o = (char *) copy + AGG_HEADER_SIZE;

	Assert(state->flags & AGG_FLAG_COUNTS);
	memcpy(copy, state, AGG_HEADER_SIZE);
	SET_VARSIZE(copy, cap);
	copy->flags &= ~AGG_FLAG_COUNTS;
	while (p < end)
	{
		Datum		value;
		float8		weight;
		AggImage	img;

		p = agg_entry_read(info, AGG_FMT_COUNT, p, &value, &weight);
		img = image_of(info, value);
		o = entry_write(info, AGG_FMT_WEIGHT, o, &img, weight);
	}
	copy->used = o - (char *) copy;
	copy->sorted_end = AGG_HEADER_SIZE;
	return copy;
}

/*
 * multiset_append
 *		Append a value known not to be in the state (img) with its weight (a
 *		count, if the state holds counts); a small state that reaches its
 *		limits becomes large (with float8 weights), a full one moves to a
 *		bigger chunk.  Returns the state, which may have moved.
 */
static CdpAggState *
multiset_append(AggTypeInfo *info, CdpAggState *state, AggImage *img,
				float8 weight)
{
	int			fmt = AGG_FORMAT(state);
	Size		need = entry_space(info, fmt, img);
	char	   *end;

	if (state->flags & AGG_FLAG_SMALL)
	{
		if (state->nitems >= (info->equalimage ? AGG_SMALL_ITEMS :
							  AGG_SMALL_ITEMS_COMPARATOR) ||
			state->used - AGG_HEADER_SIZE + need > AGG_SMALL_BYTES)
		{
			if (fmt == AGG_FMT_COUNT)
			{
				fmt = AGG_FMT_WEIGHT;
				need = entry_space(info, fmt, img);
				state = counts_to_weights(info, state, need);
			}
			state->flags &= ~AGG_FLAG_SMALL;	/* entries become the tail */
		}
		else if (state->used + need > AGG_CAPACITY(state))
		{
			state = agg_state_copy_cap(state,
									   agg_capacity_for(state->used + need,
														AGG_SMALL_GROWN));
			info->states_grown++;
		}
	}
	if (!(state->flags & AGG_FLAG_SMALL) &&
		state->used + need > AGG_CAPACITY(state))
		state = make_room(info, state, need);

	end = entry_write(info, fmt, (char *) state + state->used, img, weight);
	state->used = end - (char *) state;
	state->nitems++;
	return state;
}

/*
 * multiset_new
 *		A new multiset state with room for need bytes of entries, of the size
 *		new states of this query start with (see AGG_START_SAMPLE).
 */
static CdpAggState *
multiset_new(AggTypeInfo *info, int kind, Size need)
{
	if (++info->states_made >= AGG_START_SAMPLE)
	{
		if (info->states_grown >= AGG_START_GROWN)
			info->start_size = AGG_SMALL_GROWN;
		info->states_made = 0;
		info->states_grown = 0;
	}
	if (info->start_size > AGG_HEADER_SIZE + need)
		need = info->start_size - AGG_HEADER_SIZE;
	return agg_state_new(info, kind, need);
}

/*
 * agg_multiset_add
 *		Add a value (with a weight, for a frequency state) to a multiset
 *		state, creating the state if it is NULL.  Returns the state, which
 *		may have moved.
 */
CdpAggState *
agg_multiset_add(AggTypeInfo *info, CdpAggState *state, int kind,
				 Datum value, float8 weight)
{
	AggImage	img = image_of(info, value);

	if (state == NULL)
	{
		bool		counts = (kind == AGG_KIND_FREQUENCY &&
							  weight_is_count(weight));

		state = multiset_new(info, kind,
							 entry_space(info, counts ? AGG_FMT_COUNT :
										 AGG_KIND_FORMAT(kind), &img));
		if (counts)
			state->flags |= AGG_FLAG_COUNTS;
	}
	else
	{
		if ((state->flags & AGG_FLAG_COUNTS) && !weight_is_count(weight))
			state = counts_to_weights(info, state, 0);
		if (state->flags & AGG_FLAG_SMALL)
		{
			int			found = small_find(info, state, &img, weight);

			if (found < 0)
			{
				/* a count would overflow */
				state = counts_to_weights(info, state, 0);
				found = small_find(info, state, &img, weight);
			}
			if (found > 0)
				return state;
		}
	}
	return multiset_append(info, state, &img, weight);
}

/*
 * varlena_key
 *		A digest of a varlena's data for small_union_varlena's index: its
 *		length and first and last bytes.  Equal values have equal keys.
 */
static inline uint32
varlena_key(const char *data, Size len)
{
	if (len == 0)
		return 0;
	return ((uint32) len << 16) | ((uint32) (uint8) data[0] << 8) |
		(uint8) data[len - 1];
}

/*
 * small_union_varlena
 *		agg_multiset_union for a small state of an equal-image varlena type
 *		(text with a deterministic collation): the state's entries are
 *		indexed once by key and offset, so that each of other's values is
 *		looked up in a compact array instead of by walking the entries.
 *		Hits add their weight where they are (no moving ahead); new values
 *		are appended.  Once the state stops being small, the rest of other
 *		is added one by one.
 */
static CdpAggState *
small_union_varlena(AggTypeInfo *info, CdpAggState *state, CdpAggState *other)
{
	int			kind = state->kind;
	int			fmt = AGG_FORMAT(state);
	int			ofmt = AGG_FORMAT(other);
	Size		prefix = fmt;
	uint32		keys[AGG_SMALL_ITEMS];
	uint32		offs[AGG_SMALL_ITEMS];
	uint32		n = 0;
	char	   *p = (char *) state + AGG_HEADER_SIZE;
	char	   *end = (char *) state + state->used;
	char	   *op = (char *) other + AGG_HEADER_SIZE;
	char	   *oend = (char *) other + other->used;

	while (p < end)
	{
		char	   *v = value_start(info, p + prefix);

		if (n >= AGG_SMALL_ITEMS)
			break;
		keys[n] = varlena_key(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		offs[n++] = p - (char *) state;
		p = v + VARSIZE_ANY(v);
	}
	if (p < end)
		return NULL;			/* cannot happen: small states are smaller */

	while (op < oend)
	{
		Datum		value;
		float8		weight;
		char	   *data;
		Size		len;
		uint32		key;
		uint32		i;
		AggImage	img;
		uint32		at;

		op = agg_entry_read(info, ofmt, op, &value, &weight);
		data = VARDATA_ANY(DatumGetPointer(value));
		len = VARSIZE_ANY_EXHDR(DatumGetPointer(value));
		key = varlena_key(data, len);
		for (i = 0; i < n; i++)
		{
			char	   *v;

			if (keys[i] != key)
				continue;
			v = value_start(info, (char *) state + offs[i] + prefix);
			if (VARSIZE_ANY_EXHDR(v) == len && memcmp(VARDATA_ANY(v), data, len) == 0)
				break;
		}
		if (i < n)
		{
			if (kind != AGG_KIND_FREQUENCY ||
				weight_add((char *) state + offs[i], fmt, weight))
				continue;
			/* a count would overflow: the rest one by one */
			state = counts_to_weights(info, state, 0);
		}
		else
		{
			/* a new value */
			img = image_of(info, value);
			at = state->used;
			state = multiset_append(info, state, &img, weight);
			if ((state->flags & AGG_FLAG_SMALL) && AGG_FORMAT(state) == fmt &&
				n < AGG_SMALL_ITEMS)
			{
				keys[n] = key;
				offs[n++] = at;
				continue;
			}
			if (op >= oend)
				break;
			op = agg_entry_read(info, ofmt, op, &value, &weight);
		}
		state = agg_multiset_add(info, state, kind, value, weight);
		while (op < oend)
		{
			op = agg_entry_read(info, ofmt, op, &value, &weight);
			state = agg_multiset_add(info, state, kind, value, weight);
		}
		break;
	}
	return state;
}

/*
 * agg_multiset_union
 *		Add the entries of other (of the same kind and type) to a multiset
 *		state (NULL: a copy of other).  They are added one by one: a small
 *		state looks each up, a large one appends it to its tail (other may
 *		even have been sorted with another collation) for the next
 *		compaction to merge.
 */
CdpAggState *
agg_multiset_union(AggTypeInfo *info, CdpAggState *state, CdpAggState *other)
{
	char	   *p = (char *) other + AGG_HEADER_SIZE;
	char	   *end = (char *) other + other->used;

	if (state == NULL)
		return agg_state_copy(other, 0);
	if ((state->flags & AGG_FLAG_COUNTS) && !(other->flags & AGG_FLAG_COUNTS))
		state = counts_to_weights(info, state, 0);
	if ((state->flags & AGG_FLAG_SMALL) && info->equalimage &&
		info->typlen == -1)
	{
		CdpAggState *result = small_union_varlena(info, state, other);

		if (result != NULL)
			return result;
	}
	while (p < end)
	{
		Datum		value;
		float8		weight;

		p = agg_entry_read(info, AGG_FORMAT(other), p, &value, &weight);
		state = agg_multiset_add(info, state, other->kind, value, weight);
	}
	return state;
}

/*
 * small_sorted
 *		The entries of a small multiset (distinct) in value order by their
 *		ranks (agg_rank.c), in items; false if the rank cache cannot rank
 *		them all.
 */
static bool
small_sorted(AggTypeInfo *info, CdpAggState *state, AggItem *items)
{
	char	   *p = (char *) state + AGG_HEADER_SIZE;
	char	   *end = (char *) state + state->used;
	int			entries[AGG_SMALL_ITEMS];
	uint32		ranks[AGG_SMALL_ITEMS];
	uint32		n = 0;
	uint32		i;

	if (state->nitems > AGG_SMALL_ITEMS)
		return false;
	for (; p < end; n++)
	{
		p = agg_entry_read(info, AGG_FORMAT(state), p, &items[n].value,
						   &items[n].weight);
		entries[n] = agg_rank_entry(info, items[n].value);
		if (entries[n] < 0)
			return false;
	}
	for (i = 0; i < n; i++)
		ranks[i] = agg_rank_of(info, entries[i]);

	/* insertion sort by rank: a few dozen items at most */
	for (i = 1; i < n; i++)
	{
		AggItem		item = items[i];
		uint32		rank = ranks[i];
		uint32		j = i;

		for (; j > 0 && ranks[j - 1] > rank; j--)
		{
			items[j] = items[j - 1];
			ranks[j] = ranks[j - 1];
		}
		items[j] = item;
		ranks[j] = rank;
	}
	return true;
}

/*
 * agg_multiset_sorted
 *		The distinct values of a multiset state in ascending order, with
 *		their total weights: an array in info->items, valid until the next
 *		use of info.  *count gets its length.  The state is not changed.
 */
AggItem *
agg_multiset_sorted(AggTypeInfo *info, CdpAggState *state, uint32 *count)
{
	char	   *p;
	char	   *end;
	AggItem    *items = agg_items_reserve(info, state->nitems);
	uint32		n = 0;
	int			fmt = AGG_FORMAT(state);

	if ((state->flags & AGG_FLAG_SMALL) && info->equalimage &&
		small_sorted(info, state, items))
	{
		*count = state->nitems;
		return items;
	}

	if (state->sorted_end < state->used)
	{
		uint32		merged;
		Size		len = multiset_merge(info, state, &merged);

		p = info->scratch + AGG_HEADER_SIZE;
		end = p + len;
		items = info->items;	/* the merge may have reallocated them */
		fmt = AGG_KIND_FORMAT(state->kind);
	}
	else
	{
		p = (char *) state + AGG_HEADER_SIZE;
		end = (char *) state + state->used;
	}

	while (p < end)
	{
		AggItem    *item = &items[n++];

		p = agg_entry_read(info, fmt, p, &item->value, &item->weight);
	}
	*count = n;
	return items;
}

/*
 * agg_multiset_pack
 *		A copy of a multiset state without spare room, sorted and merged:
 *		the form states are stored and sent in.
 */
CdpAggState *
agg_multiset_pack(AggTypeInfo *info, CdpAggState *state)
{
	CdpAggState *copy;

	if (state->sorted_end < state->used)
	{
		uint32		count;
		Size		len = multiset_merge(info, state, &count);

		copy = palloc(AGG_HEADER_SIZE + len);
		memcpy(copy, state, AGG_HEADER_SIZE);
		memcpy((char *) copy + AGG_HEADER_SIZE, info->scratch + AGG_HEADER_SIZE,
			   len);
		copy->used = AGG_HEADER_SIZE + len;
		copy->nitems = count;
	}
	else
	{
		copy = palloc(state->used);
		memcpy(copy, state, state->used);
	}
	SET_VARSIZE(copy, copy->used);
	copy->sorted_end = copy->used;
	copy->flags &= ~(AGG_FLAG_SMALL | AGG_FLAG_COUNTS);
	return copy;
}
