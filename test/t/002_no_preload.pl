# Without shared_preload_libraries the extension installs and stitches, and
# the library is loaded by the first call of one of its C functions; only
# then are the cdp_traits.* settings defined.  The SQL-level entry points
# that read settings (refresh_context, calculate_attributes) must work as the
# very first statement of a new session, and must see a setting SET in that
# session before the library was loaded.  (The regression suites preload the
# library, which hides this.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload_calc');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the server does not preload the library');

$node->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE TABLE ev (id int PRIMARY KEY, source_id text, type text, version text,
                 event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
INSERT INTO ev VALUES (1, 'web', 'buy', '1', '2025-01-01', '{"email": "a", "amt": 10}'),
                      (2, 'web', 'buy', '1', '2025-01-02', '{"email": "a", "amt": 5}'),
                      (3, 'web', 'buy', '1', '2025-01-03', '{"email": "b", "amt": 7}');
INSERT INTO cdp_traits.attributes VALUES
  ('revenue', '{"type": "sum", "value": "payload->>''amt''"}');
INSERT INTO cdp_traits.context (key, query) VALUES ('events', 'SELECT count(*) FROM public.ev');
});

is($node->safe_psql('postgres',
	'SELECT count(DISTINCT customer_entity_id) FROM cdp_traits.customer_events WHERE id IN (1, 2)'),
	'1', 'stitching works without shared_preload_libraries');
is($node->safe_psql('postgres',
	"SELECT cdp_traits.version(), current_setting('cdp_traits.naptime')"),
	'0.2.0|1min', 'settings are defined once the library is loaded');

# Each safe_psql below is a new session: nothing of the library has run in it.
is($node->safe_psql('postgres', 'SELECT cdp_traits.refresh_context()'), '1',
	'refresh_context() is the first statement of a new session');
is($node->safe_psql('postgres', 'SELECT cdp_traits.calculate_attributes()'), '2',
	'calculate_attributes() is the first statement of a new session');
is($node->safe_psql('postgres',
	"SELECT customer_entity_id IS NOT NULL, revenue FROM cdp_traits.pivoted_customer_attributes ORDER BY revenue"),
	"t|7\nt|15", 'the attribute was calculated');
is($node->safe_psql('postgres', 'SELECT cdp_traits.calculate_attributes(true)'), '2',
	'a forced calculation in a new session');

# Nothing is stale with the default settings (48h, 24h) ...
is($node->safe_psql('postgres',
	'SELECT cdp_traits.calculate_attributes(), cdp_traits.refresh_context()'), '0|0',
	'nothing is stale under the defaults');
# ... and a value SET in the session before the library is loaded applies.
is($node->safe_psql('postgres', q{
SET cdp_traits.recalculate_after = 0;
SELECT cdp_traits.calculate_attributes();
}), '2', 'recalculate_after SET before the library was loaded is used');
is($node->safe_psql('postgres', q{
SET cdp_traits.context_ttl = 0;
SELECT cdp_traits.refresh_context();
}), '1', 'context_ttl SET before the library was loaded is used');
is($node->safe_psql('postgres', q{
SET cdp_traits.state_min_events = 1;
SELECT cdp_traits.calculate_attributes(true);
SELECT count(*) FROM cdp_traits.entity_states;
}), "2\n2", 'state_min_events SET before the library was loaded is used');

# A database-level setting (no preload, so not from postgresql.conf' own
# definition) is taken as well.
$node->safe_psql('postgres', q{ALTER DATABASE postgres SET cdp_traits.recalculate_after = '0'});
is($node->safe_psql('postgres', 'SELECT cdp_traits.calculate_attributes()'), '2',
	'a database-level setting is used');
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET cdp_traits.recalculate_after');

# Once one of the functions ran, the settings exist in that session, with
# the defaults defined by the library.
is($node->safe_psql('postgres', q{
SELECT cdp_traits.refresh_context();
SHOW cdp_traits.recalculate_after;
SHOW cdp_traits.context_ttl;
}), "0\n2d\n1d", 'the settings exist after the first call, with their defaults');
is($node->safe_psql('postgres', q{
LOAD 'cdp_traits';
SHOW cdp_traits.state_min_events;
}), '20', 'LOAD defines the settings too');

# Only cdp_traits settings are read through the internal helper.
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT cdp_traits._setting('work_mem')");
isnt($ret, 0, '_setting() refuses other settings');
like($err, qr/"work_mem" is not a setting of cdp_traits/, '... with a clear error');

is($node->safe_psql('postgres',
	"SELECT status || ': ' || detail FROM cdp_traits.health() WHERE item = 'worker'"),
	'ok: no background worker (cdp_traits is not in shared_preload_libraries): jobs run when cdp_traits.run_jobs() is called',
	'health() says there is no worker, and that this is fine');

$node->safe_psql('postgres', 'DROP EXTENSION cdp_traits CASCADE');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdp_traits%'"),
	'0', 'DROP EXTENSION removes the triggers it installed');

$node->stop;
done_testing();
