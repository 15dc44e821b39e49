# cdp_traits — PGXS build
#
#   make                      build the library and the install script
#   make install              install into the PostgreSQL found by pg_config
#   make installcheck         regression, isolation and TAP tests, each against
#                             a throw-away server started by the harness
#
# The tests start their own servers (--temp-instance), so they need no running
# cluster, but initdb refuses to run as root: run them as an ordinary user
# (scripts/test.sh does that for you).

EXTENSION = cdp_traits
EXTVERSION = 0.2.0

MODULE_big = cdp_traits
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
PGFILEDESC = "cdp_traits - customer data platform core"

# The install script of the current version is assembled from one file per
# concern, in name order.  Older versions' full scripts are frozen copies
# (cdp_traits--0.1.0.sql) and every cdp_traits--A--B.sql is an update step;
# all of them are installed, so that any older version can be created and
# updated (see README "Upgrades" and the regression test "upgrade").
SQL_PARTS = $(sort $(wildcard src/sql/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*.sql))

PG_CPPFLAGS = -Isrc -DCDP_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wmissing-prototypes -Wpointer-arith -Werror=vla
ifdef WERROR
PG_CFLAGS += -Werror
endif

# Regression suites (sql/ + expected/), run against a temporary instance that
# preloads the library (test/cdp_traits.conf).
REGRESS = extension guc generator stitching_errors stitching stitching_partitioned partition_drop stitching_statements stitching_replica peer_fixture stitching_random stitching_bulk rule_dependencies explain_entity bridging erase import_meiro_config \
	aggregates aggregates_types aggregates_large aggregates_state \
	context attributes_errors attributes attributes_incremental attribute_states attributes_compiled attributes_json attributes_values attributes_scale segments segments_random segments_replica audience_toggles worker health privileges publish events_columns ddl_guard upgrade dbt_example locales
REGRESS_OPTS = --temp-instance=./tmp_check_regress \
	--temp-config=$(srcdir)/test/cdp_traits.conf \
	--load-extension=$(EXTENSION)

# Isolation specs (test/isolation/specs + test/isolation/expected).
ISOLATION = smoke same_identifier chain_crosswise delete_insert merge_vs_attach update_vs_insert touch_deadlock duplicate_id calc_vs_stitch segments states_vs_stitch calc_vs_definitions schema_rename detach_concurrently run_jobs_vs_calc import_concurrent snapshot_writers counts_deadlock publish_concurrent calc_counts_deadlock config_mid_pass config_reload stale_update history_concurrent stale_values definitions_vs_ddl restitch_vs_ddl context_vs_edit context_during_run erase_vs_insert bridging_vs_merge
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation \
	--temp-instance=./tmp_check_iso \
	--temp-config=$(srcdir)/test/cdp_traits.conf \
	--load-extension=$(EXTENSION)

# TAP tests (test/t/*.pl), PostgreSQL::Test::Cluster.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

# Deterministic test output: C locale, UTF-8 databases.
NO_LOCALE = 1
ENCODING = UTF8

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the shared headers (PGXS does not track them), and
# the library's version (CDP_VERSION) comes from this file.
$(OBJS): $(wildcard src/*.h)
src/cdp_traits.o: Makefile

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

.PHONY: bench
bench:
	bash test/bench/run.sh
