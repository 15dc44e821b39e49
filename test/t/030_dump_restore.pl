# pg_dump of a database using cdp_traits, restored into a new database, keeps
# rules, blocklist, definitions, context, stitching state and results: the
# restored stitching verifies, values and the pivot are equal, sequences go on,
# and the restored triggers keep stitching new events.  Segment events, their
# ids, memberships, profiles and toggles are kept too (the trigger on
# segment_events does not take the restored rows for re-deliveries), and
# segment events written afterwards give the same results in both databases.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = off
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE SCHEMA cdp_ce;
CREATE TABLE cdp_ce.customer_events (id uuid PRIMARY KEY, source_id text, type text, version text,
                                     event_time timestamptz, payload jsonb, extra text);
CREATE SCHEMA analytics;
CREATE TABLE analytics.ltv (customer_entity_id uuid, value numeric);
INSERT INTO cdp_traits.stitching_rules (attribute_id, source_id, value_expression) VALUES
  ('email', NULL, $$lower(btrim(payload->>'email'))$$),
  ('phone', NULL, $$jsonb_array_elements_text(payload->'phones')$$),
  ('cookie', 'web', $$payload->>'cookie'$$);
INSERT INTO cdp_traits.stitching_blocklist VALUES ('email', 'nobody@x.org'), (NULL, 'n/a ');
-- default entries deleted, changed, and deleted then added again: a restore
-- keeps them so (its CREATE EXTENSION inserts every default, and the dump
-- held only the other rows: the deleted and changed ones were back)
DELETE FROM cdp_traits.stitching_blocklist WHERE attribute_id IS NULL AND value IN ('0', 'none', 'undefined');
UPDATE cdp_traits.stitching_blocklist SET attribute_id = 'cookie' WHERE attribute_id IS NULL AND value = '-';
UPDATE cdp_traits.stitching_blocklist SET value = 'N/A' WHERE attribute_id IS NULL AND value = 'n/a';
INSERT INTO cdp_traits.stitching_blocklist VALUES (NULL, 'none');
-- events before attach (stitched by attach_events), then after (by the triggers)
INSERT INTO cdp_ce.customer_events
SELECT md5('e' || i)::uuid, CASE WHEN i % 3 = 0 THEN 'app' ELSE 'web' END,
       CASE WHEN i % 4 = 0 THEN 'purchase' ELSE 'view' END, '1',
       '2024-01-01'::timestamptz + i * interval '1 hour',
       jsonb_build_object('email', CASE WHEN i % 5 <> 0 THEN 'user' || (i % 40) || '@x.org' END,
                          'phones', jsonb_build_array('+1' || (i % 57)),
                          'cookie', 'c' || (i % 71), 'amount', i % 13, 'page', 'p' || (i % 6))
  FROM generate_series(1, 400) i;
SELECT cdp_traits.attach_events('cdp_ce.customer_events');
INSERT INTO cdp_ce.customer_events
SELECT md5('f' || i)::uuid, 'web', 'view', '1', '2024-02-01'::timestamptz + i * interval '1 minute',
       jsonb_build_object('email', 'late' || (i % 7) || '@x.org', 'cookie', 'c' || (i % 90))
  FROM generate_series(1, 100) i;
DELETE FROM cdp_ce.customer_events WHERE id = md5('e17')::uuid;
-- two entities, then an event that links them: a merge
INSERT INTO cdp_ce.customer_events VALUES
  (md5('m1')::uuid, 'app', 'view', '1', '2024-02-02', '{"email": "solo@x.org"}', NULL),
  (md5('m2')::uuid, 'app', 'view', '1', '2024-02-03', '{"phones": ["+999"]}', NULL);
INSERT INTO cdp_ce.customer_events VALUES
  (md5('m3')::uuid, 'app', 'view', '1', '2024-02-04', '{"email": "solo@x.org", "phones": ["+999"]}', NULL);
INSERT INTO cdp_traits.context (key, value, query) VALUES
  ('events', NULL, 'SELECT count(*) FROM cdp_traits.customer_events'),
  ('multiplier', '3', NULL);
INSERT INTO analytics.ltv SELECT id, 42 FROM cdp_traits.customer_entities ORDER BY id LIMIT 5;
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('revenue', '{"type": "sum", "value": "payload->>''amount''", "types": ["purchase"], "history": true}'),
  ('top_page', '{"type": "most_frequent", "value": "payload->>''page''"}'),
  ('pages', '{"type": "list", "value": "payload->>''page''"}'),
  ('n_events', '{"type": "custom", "query": "SELECT count(*) * cdp_traits.context_value(''multiplier'')::int AS value FROM base"}'),
  ('ltv', '{"type": "external", "query": "SELECT customer_entity_id, value FROM analytics.ltv", "data_type": "number"}'),
  ('buyer', '{"type": "audience", "condition": "revenue > 20"}');
SELECT cdp_traits.calculate_attributes();
-- a retyped attribute: the pivot view is recreated
UPDATE cdp_traits.attributes SET definition = '{"type": "num_of_unique", "value": "payload->>''page''"}'
 WHERE id = 'top_page';
INSERT INTO cdp_ce.customer_events VALUES
  (md5('g1')::uuid, 'web', 'purchase', '1', '2024-03-01', '{"email": "user1@x.org", "amount": 100}', NULL);
SELECT cdp_traits.run_jobs();
-- published views, in place of an old table (kept as customer_events_backup)
CREATE SCHEMA mart;
CREATE TABLE mart.customer_events (old int);
SELECT cdp_traits.publish('mart');
-- a published schema renamed: its publication follows (a restore publishes
-- into "Reporting", which is not staging and not reporting)
CREATE SCHEMA staging;
SELECT cdp_traits.publish('staging');
ALTER SCHEMA staging RENAME TO "Reporting";
-- segment events: a bulk load (over cdp_traits.max_segment_locks: the
-- large-batch path), single events, re-deliveries, and a retention delete
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
SELECT md5('s' || i)::uuid, 'u' || (i % 60), 1 + i % 3, 'seg-' || (i % 7),
       '2024-01-01T00:00:00Z'::timestamptz + i * interval '7 minutes',
       i % 11 < 4, CASE WHEN i % 11 >= 4 AND i % 2 = 0 THEN 'v' || (i % 4) END
  FROM generate_series(1, 1500) i;
SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', md5('t' || i)::uuid, 'user', 'u' || (i % 9),
         'segment', jsonb_build_object('vendor', 2, 'name', 'seg-' || (i % 4)),
         'timestamp', '2024-03-01T10:00:00+05:30') || CASE WHEN i % 2 = 0 THEN jsonb '{"remove": true}' ELSE '{}' END)
  FROM generate_series(1, 40) i;
SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', md5('s' || 3)::uuid, 'user', 'u3',
         'segment', jsonb_build_object('vendor', 1, 'name', 'seg-3'), 'timestamp', '2024-04-01T00:00:00Z'));
DELETE FROM cdp_traits.segment_events WHERE seq <= 100;
});
is($node->safe_psql('src', 'SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
	'the source database is consistent');

# What must survive, as text, for both databases.
my %checks = (
	rules => "SELECT attribute_id, source_id, value_expression FROM cdp_traits.stitching_rules ORDER BY 1, 2, 3",
	blocklist => "SELECT attribute_id, value FROM cdp_traits.stitching_blocklist ORDER BY 1, 2",
	events_source => "SELECT events, id_type, attached FROM cdp_traits.events_source",
	entities => "SELECT id, created, modified, calculated FROM cdp_traits.customer_entities ORDER BY id",
	matching => "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching ORDER BY 1, 2",
	event_entities => "SELECT event_id, customer_entity_id FROM cdp_traits.event_entities ORDER BY 1",
	merges => "SELECT merged_id, into_id, merged_at FROM cdp_traits.entity_merges ORDER BY 1",
	definitions => "SELECT id, definition, version, created, modified FROM cdp_traits.attributes ORDER BY id",
	context => "SELECT key, value, query, modified FROM cdp_traits.context ORDER BY key",
	values => "SELECT customer_entity_id, vals, calculated_at, run_id FROM cdp_traits.entity_attributes ORDER BY 1",
	history => "SELECT * FROM cdp_traits.attribute_history ORDER BY 1, 2, 4",
	pivot => "SELECT * FROM cdp_traits.pivoted_customer_attributes ORDER BY 1",
	pivot_columns => "SELECT attname, atttypid::regtype FROM pg_attribute WHERE attrelid = 'cdp_traits.pivoted_customer_attributes'::regclass AND attnum > 0 ORDER BY attnum",
	customer_events => "SELECT id, customer_entity_id, extra FROM cdp_traits.customer_events ORDER BY 1",
	runs => "SELECT id, forced, entities, values_written FROM cdp_traits.calculation_runs ORDER BY id",
	run_attributes => "SELECT run_id, attribute_id, entities FROM cdp_traits.calculation_run_attributes ORDER BY 1, 2",
	audience => "SELECT seq, audience_id, customer_entity_id, entered FROM cdp_traits.audience_changes ORDER BY seq",
	segment_events => "SELECT * FROM cdp_traits.segment_events ORDER BY seq",
	segment_event_ids => "SELECT * FROM cdp_traits.segment_event_ids ORDER BY seq, event",
	memberships => "SELECT * FROM cdp_traits.segment_memberships ORDER BY 1, 2, 3",
	profiles => "SELECT * FROM cdp_traits.segment_profiles ORDER BY 1",
	toggles => "SELECT * FROM cdp_traits.segment_toggles ORDER BY seq",
	segment_sequences => "SELECT (SELECT last_value FROM cdp_traits.segment_events_seq_seq), (SELECT last_value FROM cdp_traits.segment_toggles_seq_seq)",
	counts => "SELECT * FROM cdp_traits.attribute_counts ORDER BY 1",
	value_counts => "SELECT * FROM cdp_traits.attribute_value_counts ORDER BY 1, 2",
	job_runs => "SELECT id, job, status FROM cdp_traits.job_runs ORDER BY id",
	triggers => "SELECT tgname FROM pg_trigger WHERE tgrelid = 'cdp_ce.customer_events'::regclass ORDER BY 1",
	published => "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'mart'::regnamespace ORDER BY 1",
	published_pivot => "SELECT * FROM mart.pivoted_customer_attributes ORDER BY 1",
	published_events => "SELECT id, customer_entity_id FROM mart.customer_events ORDER BY 1",
	publications => "SELECT target_schema FROM cdp_traits.publications ORDER BY 1",
	published_renamed => "SELECT relname, relkind FROM pg_class WHERE relnamespace = '\"Reporting\"'::regnamespace ORDER BY 1",
	published_renamed_pivot => "SELECT * FROM \"Reporting\".pivoted_customer_attributes ORDER BY 1",
	privileges => "SELECT relname, relacl FROM pg_class WHERE relnamespace = 'cdp_traits'::regnamespace ORDER BY 1");
my %before;
$before{$_} = $node->safe_psql('src', $checks{$_}) for keys %checks;
is($node->safe_psql('src', q{SELECT string_agg(coalesce(attribute_id, '*') || ':' || value, ','
                                              ORDER BY attribute_id COLLATE "C", value COLLATE "C")
                             FROM cdp_traits.stitching_blocklist}),
	'cookie:-,email:nobody@x.org,*:,*:N/A,*:n/a ,*:none,*:null,*:unknown',
	'the source has a blocklist with defaults deleted and changed');
cmp_ok(scalar(split /\n/, $before{matching}), '>', 100, 'the source has identifiers');
like($before{merges}, qr/\S/, '... merges');
like($before{history}, qr/\S/, '... history');
like($before{audience}, qr/\S/, '... audience changes');
like($before{pivot_columns}, qr/top_page\|bigint/, '... and a recreated pivot view');
is($before{publications}, "Reporting\nmart", '... and a publication that followed its schema\'s new name');
cmp_ok(scalar(split /\n/, $before{segment_events}), '>', 1400, '... segment events');
cmp_ok(scalar(split /\n/, $before{segment_event_ids}), '>', scalar(split /\n/, $before{segment_events}),
	'... ids of deleted segment events');
cmp_ok(scalar(split /\n/, $before{toggles}), '>', 100, '... segment toggles');
like($before{profiles}, qr/"value": "v/, '... and segment profiles');

# Dump (custom format) and restore into a new database; any error fails.
my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst'), $dump ],
	'pg_restore into a new database, without errors');

is($node->safe_psql('dst', 'SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
	'verify_stitching() is empty after the restore');
for my $k (sort keys %checks)
{
	is($node->safe_psql('dst', $checks{$k}), $before{$k}, "$k equal after the restore");
}
is($node->safe_psql('dst',
	"SELECT count(*) FROM cdp_traits.stitching_blocklist GROUP BY attribute_id, lower(value) HAVING count(*) > 1"),
	'', 'no blocklist row is duplicated');

# pg_restore may load the data of the extension's tables in any order: a
# dump records no order between the data of tables, and pg_restore -j loads
# them side by side as its jobs come free.  The same dump restored serially
# in two adverse orders (from a list, -L), then in parallel, gives the same
# database: no foreign key between the extension's tables, and the trigger
# on segment_events keeps what pg_restore loads as it is (neither applied as
# new events nor taken for re-deliveries, whether their ids, memberships,
# profiles and toggles are loaded before or after them).  pg_restore is
# known by its application_name (its default, which this harness's PGAPPNAME
# would replace).
$ENV{PGAPPNAME} = 'pg_restore';
my @list = split /\n/, `pg_restore -l $dump`;
is($?, 0, 'pg_restore -l lists the dump');
my @data = grep { /\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) / } @list;
cmp_ok(scalar(@data), '>', 20, 'the dump lists the data of the extension\'s tables');
my %orders = (
	reversed => [ reverse @data ],
	segment_events_first => [
		(grep { / (segment_events|calculation_run_attributes) / } @data),
		(grep { !/ (segment_events|calculation_run_attributes) / } @data) ]);
for my $order (sort keys %orders)
{
	# the list in full, with the data items in this order in their place
	my @ordered = @{ $orders{$order} };
	my $file = $node->basedir . "/$order.list";
	open my $fh, '>', $file or die "$file: $!";
	print $fh (/\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) / ? shift(@ordered) : $_), "\n" for @list;
	close $fh;
	$node->safe_psql('postgres', "CREATE DATABASE dst_$order");
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-L', $file, '-d', $node->connstr("dst_$order"), $dump ],
		"pg_restore with the data loaded in $order order, without errors");
	for my $k (sort keys %checks)
	{
		is($node->safe_psql("dst_$order", $checks{$k}), $before{$k}, "$k equal after the restore in $order order");
	}
}
$node->safe_psql('postgres', 'CREATE DATABASE dstj');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-j', '4', '-d', $node->connstr('dstj'), $dump ],
	'pg_restore -j 4, without errors');
is($node->safe_psql('dstj', 'SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
	'verify_stitching() is empty after the parallel restore');
for my $k (sort keys %checks)
{
	is($node->safe_psql('dstj', $checks{$k}), $before{$k}, "$k equal after the parallel restore");
}

# pg_restore --clean --if-exists over a database restored before and changed
# since: it drops customer_events (on which the published views, members of
# the extension, depend), the events table and the extension, and restores
# the dump's state in their place.  (customer_events was made again at the
# end of its DROP VIEW, or could not be dropped for the published views, so
# neither the events table nor the extension could be dropped, and the old
# rows stayed.)
$node->safe_psql('postgres', 'CREATE DATABASE dstc');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dstc'), $dump ],
	'pg_restore into a new database, for --clean');
$node->safe_psql('dstc', q{
SET client_min_messages = warning;
INSERT INTO cdp_ce.customer_events VALUES
  (md5('c1')::uuid, 'web', 'view', '1', '2024-05-01', '{"email": "user3@x.org"}', NULL);
DELETE FROM cdp_traits.attributes WHERE id = 'pages';
SELECT cdp_traits.calculate_attributes();
});
$node->command_ok([ 'pg_restore', '--exit-on-error', '--clean', '--if-exists', '-d', $node->connstr('dstc'), $dump ],
	'pg_restore --clean --if-exists over the changed database, without errors');
is($node->safe_psql('dstc', 'SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
	'verify_stitching() is empty after the restore with --clean');
for my $k (sort keys %checks)
{
	is($node->safe_psql('dstc', $checks{$k}), $before{$k}, "$k equal after the restore with --clean");
}

$ENV{PGAPPNAME} = '030_dump_restore.pl';

# A plain-format dump restores through psql as well.
my $plain = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('src'), '-f', $plain ], 'pg_dump (plain)');
$node->safe_psql('postgres', 'CREATE DATABASE dst2');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst2'), '-f', $plain ],
	'the plain dump restores with psql, without errors');
for my $k (qw(blocklist values segment_events segment_event_ids memberships profiles toggles))
{
	is($node->safe_psql('dst2', $checks{$k}), $before{$k}, "$k equal after the plain restore");
}

# A restored database dumped and restored again keeps the blocklist too.
my $again = $node->basedir . '/dst.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('dst'), '-f', $again ], 'pg_dump of the restored database');
$node->safe_psql('postgres', 'CREATE DATABASE dst_again');
{
	local $ENV{PGAPPNAME} = 'pg_restore';
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst_again'), $again ],
		'pg_restore of the restored database, without errors');
}
is($node->safe_psql('dst_again', $checks{blocklist}), $before{blocklist}, 'blocklist equal after a second round');

# The restored database works: new events are stitched into the restored
# entities (triggers, rules and plans), sequences go on, calculation runs.
# (The new events link to existing entities only, so ids are the same.)
$node->safe_psql($_, q{
SET client_min_messages = warning;
INSERT INTO cdp_ce.customer_events VALUES
  (md5('h1')::uuid, 'web', 'purchase', '1', '2024-04-01', '{"email": "USER2@x.org", "amount": 50}', NULL),
  (md5('h2')::uuid, 'app', 'view', '1', '2024-04-01', '{"email": "new@x.org", "phones": ["+11"]}', NULL);
SELECT cdp_traits.calculate_attributes();
SELECT cdp_traits.run_jobs();
-- segment events on restored keys, a re-delivery of a deleted event and of
-- a kept one (both ignored), a bulk load
SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', md5('w' || i)::uuid, 'user', 'u' || (i % 60),
         'segment', jsonb_build_object('vendor', 1 + i % 3, 'name', 'seg-' || (i % 7)),
         'timestamp', '2024-05-01T00:00:00Z') || CASE WHEN i % 3 = 0 THEN jsonb '{"remove": true}' ELSE '{"value": "w"}' END)
  FROM generate_series(1, 30) i;
SELECT cdp_traits.ingest_segment_event(jsonb_build_object('event', md5('s' || i)::uuid, 'user', 'u1',
         'segment', jsonb_build_object('vendor', 1, 'name', 'seg-1'), 'timestamp', '2024-05-02T00:00:00Z'))
  FROM (VALUES (7), (1400)) v(i);
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
SELECT md5('x' || i)::uuid, 'u' || (i % 60), 1 + i % 3, 'seg-' || (i % 7),
       '2024-06-01T00:00:00Z'::timestamptz + i * interval '1 minute', i % 13 < 6
  FROM generate_series(1, 700) i;
}) for ('src', 'dst', 'dstj');
$checks{toggles} = "SELECT seq, vendor, segment, user_id, member, event, event_time, value, previous_event, previous_time FROM cdp_traits.segment_toggles ORDER BY seq";
# The runs are the same, but for the entities the first one after the
# restore recalculated: restored definitions count as new, so it calculated
# every attribute for every entity (and says so), where the source's run
# recalculated the entity the new events changed.
my $runs = "SELECT id, forced, values_written FROM cdp_traits.calculation_runs ORDER BY id";
my $first_run_after = q{SELECT entities, entities = (SELECT count(*) FROM cdp_traits.customer_entities)
  FROM cdp_traits.calculation_runs ORDER BY id DESC OFFSET 1 LIMIT 1};
cmp_ok($node->safe_psql('src', 'SELECT count(*) FROM cdp_traits.customer_entities'), '>', 1,
	'runs: there is more than one entity');
is($node->safe_psql('src', $first_run_after), '1|f',
	'runs: the source recalculated the entity the new events changed');
# the serial and the parallel restore, each against the source
for my $db ('dst', 'dstj')
{
	is($node->safe_psql($db, 'SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
		"$db: events written after the restore are stitched consistently");
	for my $k (qw(segment_events segment_event_ids memberships profiles toggles segment_sequences))
	{
		is($node->safe_psql($db, $checks{$k}), $node->safe_psql('src', $checks{$k}),
			"$db: $k: segment events written after the restore give the same results in both databases");
	}
	for my $k (qw(matching event_entities merges pivot job_runs counts))
	{
		is($node->safe_psql($db, $checks{$k}) =~ s/\d{4}-\d\d-\d\d [0-9:.+]+//gr,
			$node->safe_psql('src', $checks{$k}) =~ s/\d{4}-\d\d-\d\d [0-9:.+]+//gr,
			"$db: $k: the same changes give the same results in both databases");
	}
	is($node->safe_psql($db, $runs), $node->safe_psql('src', $runs),
		"$db: runs: the same changes give the same results in both databases");
	like($node->safe_psql($db, $first_run_after), qr/^\d+\|t$/,
		"$db: runs: the restored database recalculated every entity (its definitions count as new)");
}

# A partitioned events table in a schema of its own, with uuid ids.  The
# stitching triggers are on the table and on each partition (ordinary
# objects of the dump); a restore recreates them one by one, and alters the
# partitions in between (ENABLE REPLICA TRIGGER): the event trigger must not
# install them itself (the dump's CREATE TRIGGER then failed: trigger
# already exists) nor stitch the restored rows again.  Restored as plain
# SQL, in parallel from a directory, and in two steps (schema, then data:
# the data step loads the events with the triggers in place, and must not
# stitch them again either, whatever the order of the tables).
$node->safe_psql('postgres', 'CREATE DATABASE psrc');
$node->safe_psql('psrc', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE SCHEMA ev;
CREATE TABLE ev.events (id uuid, source_id text, type text, version text, event_time timestamptz,
                        payload jsonb, PRIMARY KEY (id, event_time)) PARTITION BY RANGE (event_time);
CREATE TABLE ev.events_a PARTITION OF ev.events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE ev.events_b PARTITION OF ev.events FOR VALUES FROM ('2024-02-01') TO ('2025-01-01');
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$lower(payload->>'email')$$), ('cookie', $$payload->>'cookie'$$);
INSERT INTO ev.events SELECT md5('p' || i)::uuid, 'web', 'view', '1',
       '2024-01-01'::timestamptz + i * interval '3 hours',
       jsonb_build_object('email', 'u' || (i % 30) || '@x.org', 'cookie', 'c' || (i % 45), 'n', i % 7)
  FROM generate_series(1, 400) i;
SELECT cdp_traits.attach_events('ev.events');
INSERT INTO ev.events VALUES (md5('q1')::uuid, 'app', 'view', '1', '2024-03-01', '{"email": "u1@x.org", "cookie": "c2"}');
CREATE TABLE ev.events_c PARTITION OF ev.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO ev.events VALUES (md5('q2')::uuid, 'app', 'view', '1', '2025-03-01', '{"email": "u3@x.org"}');
INSERT INTO cdp_traits.attributes VALUES ('n', '{"type": "sum", "value": "payload->>''n''"}');
SELECT cdp_traits.calculate_attributes();
});
my %pchecks = (
	verify => "SELECT count(*) FROM cdp_traits.verify_stitching()",
	entities => "SELECT id, created, modified, calculated FROM cdp_traits.customer_entities ORDER BY id",
	matching => "SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching ORDER BY 1, 2",
	event_entities => "SELECT event_id, customer_entity_id FROM cdp_traits.event_entities ORDER BY 1",
	merges => "SELECT merged_id, into_id FROM cdp_traits.entity_merges ORDER BY 1",
	pivot => "SELECT * FROM cdp_traits.pivoted_customer_attributes ORDER BY 1",
	triggers => "SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'cdp_traits%' ORDER BY 1, 2");
my %pbefore;
$pbefore{$_} = $node->safe_psql('psrc', $pchecks{$_}) for keys %pchecks;
is($pbefore{verify}, '0', 'partitioned: the source is consistent');
cmp_ok(scalar(split /\n/, $pbefore{triggers}), '==', 4 * 6 - 1, 'partitioned: the source has the triggers');
my $pplain = $node->basedir . '/psrc.sql';
my $pdir = $node->basedir . '/psrc.dir';
my $pcustom = $node->basedir . '/psrc.dump';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('psrc'), '-f', $pplain ], 'partitioned: pg_dump (plain)');
$node->command_ok([ 'pg_dump', '-Fd', '-d', $node->connstr('psrc'), '-f', $pdir ], 'partitioned: pg_dump (directory)');
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('psrc'), '-f', $pcustom ], 'partitioned: pg_dump (custom)');
$node->safe_psql('postgres', 'CREATE DATABASE pdst_plain');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('pdst_plain'), '-f', $pplain ],
	'partitioned: the plain dump restores with psql, without errors');
$ENV{PGAPPNAME} = 'pg_restore';
$node->safe_psql('postgres', 'CREATE DATABASE pdst_dir');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-j', '2', '-d', $node->connstr('pdst_dir'), $pdir ],
	'partitioned: pg_restore -j 2 of the directory dump, without errors');
$node->safe_psql('postgres', 'CREATE DATABASE pdst_two');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--schema-only', '-d', $node->connstr('pdst_two'), $pcustom ],
	'partitioned: pg_restore --schema-only, without errors');
$node->command_ok([ 'pg_restore', '--exit-on-error', '--data-only', '-d', $node->connstr('pdst_two'), $pcustom ],
	'partitioned: then pg_restore --data-only, without errors');
$ENV{PGAPPNAME} = '030_dump_restore.pl';
for my $db ('pdst_plain', 'pdst_dir', 'pdst_two')
{
	for my $k (sort keys %pchecks)
	{
		is($node->safe_psql($db, $pchecks{$k}), $pbefore{$k}, "partitioned: $db: $k equal after the restore");
	}
}
# new events, into the table and into a partition, are stitched alike
for my $db ('psrc', 'pdst_plain', 'pdst_dir', 'pdst_two')
{
	$node->safe_psql($db, q{
INSERT INTO ev.events VALUES (md5('r1')::uuid, 'web', 'view', '1', '2024-04-01', '{"email": "u4@x.org", "cookie": "c5"}');
INSERT INTO ev.events_a VALUES (md5('r2')::uuid, 'web', 'view', '1', '2024-01-05', '{"email": "new@x.org", "cookie": "c6"}');
SELECT cdp_traits.calculate_attributes();
});
}
for my $db ('pdst_plain', 'pdst_dir', 'pdst_two')
{
	for my $k (qw(verify matching event_entities merges pivot))
	{
		is($node->safe_psql($db, $pchecks{$k}), $node->safe_psql('psrc', $pchecks{$k}),
			"partitioned: $db: $k: new events give the same results in both databases");
	}
}

$node->stop;
done_testing();
