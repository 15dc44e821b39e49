# The statements that stitching and the segment trigger keep for a session
# read their tables by index probes whatever the tables' statistics say.
#
# Autovacuum can analyze a stitching table while a long transaction fills it
# (a subscription applying a large remote transaction, a bulk load): the
# rows are not committed, so the statistics record pages and no rows.  With
# such statistics the planner found a whole-index scan (no index condition,
# the keys checked by a join filter) cheaper than probing the index once per
# key, and every later statement, or every applied row, read the whole
# table: a 40,000-event remote transaction took 250 s instead of 15 s.
#
# The test makes those statistics on purpose (ANALYZE while the rows are in
# a prepared transaction), then has a new session stitch single events and
# ingest single segment events with auto_explain logging every nested
# statement, and checks each plan of the extension's statements.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('stale');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_prepared_transactions = 2
autovacuum = off
});
$node->start;

$node->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE TABLE ev (id uuid PRIMARY KEY, source_id text, type text, version text,
                 event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$), ('cookie', $$payload->>'cookie'$$);
SELECT cdp_traits.attach_events('ev');
});

my @stitching = qw(matching event_entities customer_entities);
my @segments = qw(segment_memberships segment_profiles segment_event_ids);

# Rows written by a transaction that is not committed when the tables are
# analyzed: pages, and no rows, in pg_class.
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO ev SELECT gen_random_uuid(), 'web', 'view', '1', now(),
       jsonb_build_object('email', 'e' || g || '@example.com', 'cookie', 'c' || g)
  FROM generate_series(1, 20000) g;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
SELECT gen_random_uuid(), 'u' || g, 1, 's' || (g % 7), now(), false
  FROM generate_series(1, 20000) g;
PREPARE TRANSACTION 'load';
});
my $tables = join(', ', map { "cdp_traits.$_" } @stitching, @segments);
$node->safe_psql('postgres', "ANALYZE $tables");
$node->safe_psql('postgres', "COMMIT PREPARED 'load'");

my $in = join(', ', map { "'$_'" } @stitching, @segments);
is( $node->safe_psql('postgres', qq{
SELECT CASE WHEN count(*) >= 6 AND bool_and(c.relpages > 0 AND c.reltuples = 0)
            THEN 'all' ELSE count(*) || ' indexes: ' || string_agg(c.relname || ' ' || c.relpages || '/' || c.reltuples, ', ') END
  FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid IN (SELECT oid FROM pg_class WHERE relname IN ($in)
                         AND relnamespace = 'cdp_traits'::regnamespace)}),
	'all',
	'the indexes of the tables have pages and no rows in pg_class');

# A new session: single events that add identifiers, merge two entities,
# move and delete; single segment events that add and remove memberships.
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
INSERT INTO ev VALUES (gen_random_uuid(), 'web', 'view', '1', now(),
                       '{"email": "new@example.com", "cookie": "c-new"}');
INSERT INTO ev VALUES (gen_random_uuid(), 'web', 'view', '1', now(),
                       '{"email": "e10@example.com", "cookie": "c11"}');
INSERT INTO ev VALUES (gen_random_uuid(), 'web', 'view', '1', now(),
                       '{"email": "e12@example.com"}');
UPDATE ev SET payload = '{"email": "moved@example.com"}' WHERE payload->>'email' = 'new@example.com';
DELETE FROM ev WHERE payload->>'email' = 'moved@example.com';
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (gen_random_uuid(), 'u5', 1, 's5', now(), true);
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (gen_random_uuid(), 'u-new', 1, 's1', now(), false);
});
is($ret, 0, 'the statements ran') or diag($stderr);

# The plans, each with its statement, from the NOTICEs.
my @plans = split(/NOTICE:\s+duration: [0-9.]+ ms\s+plan:\n/, $stderr);
shift @plans;
my $names = join('|', @stitching, @segments);
my ($checked, @bad) = (0);
for my $plan (@plans)
{
	my @lines = split(/\n/, $plan);
	my ($text) = $plan =~ /Query Text: (.*)/;
	next unless defined $text && $text =~ /cdp_traits\.(?:$names)\b/;
	$checked++;
	for my $i (0 .. $#lines)
	{
		my $line = $lines[$i];
		my $next = $lines[ $i + 1 ] // '';
		if ($line =~ /Seq Scan on (?:$names)\b/
			|| $line =~ /(?:Hash|Merge) Join/
			|| ($line =~ /Index (?:Only )?Scan using \S+ on (?:$names)\b/
				&& $next !~ /Index Cond:/))
		{
			push @bad, "$text\n    $line";
		}
	}
}
cmp_ok($checked, '>=', 20, "plans of the extension's statements found ($checked)");
is(join("\n", @bad), '', 'every plan probes the indexes by key');

# and the result is right
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM cdp_traits.verify_stitching()'),
	'0', 'stitching is consistent');
is( $node->safe_psql('postgres', q{
SELECT string_agg(user_id || ':' || member, ',' ORDER BY user_id)
  FROM cdp_traits.segment_memberships WHERE user_id IN ('u5', 'u-new')}),
	'u-new:true,u5:false', 'segment memberships applied');

$node->stop;
done_testing();
