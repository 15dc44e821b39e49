# The library loads through shared_preload_libraries, its settings are read
# from postgresql.conf, and the extension installs and drops cleanly in a
# server configured that way.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('preload');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.naptime = '7s'
cdp_traits.enabled = off
});
$node->start;

is($node->safe_psql('postgres', 'SHOW cdp_traits.naptime'), '7s',
	'server-level setting read from postgresql.conf');

$node->safe_psql('postgres', 'CREATE EXTENSION cdp_traits');
is($node->safe_psql('postgres', 'SELECT cdp_traits.version()'), '0.2.0',
	'library version matches the SQL script');

# A misspelt setting under the reserved prefix is reported in the log.
$node->append_conf('postgresql.conf', "cdp_traits.naptyme = '5s'\n");
my $log_offset = -s $node->logfile;
$node->reload;
ok($node->wait_for_log(qr/invalid configuration parameter name "cdp_traits.naptyme"/, $log_offset),
	'misspelt setting is reported on reload');

$node->safe_psql('postgres', 'DROP EXTENSION cdp_traits');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_namespace WHERE nspname = 'cdp_traits'"),
	'1', 'DROP EXTENSION keeps the schema (it is not tied to the extension, for pg_dump)');

$node->stop;

# Without shared_preload_libraries: the extension installs and stitches; the
# library (and its settings) load with the first call.
my $plain = PostgreSQL::Test::Cluster->new('no_preload');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{
CREATE EXTENSION cdp_traits;
CREATE TABLE ev (id int PRIMARY KEY, source_id text, type text, version text,
                 event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('ev');
INSERT INTO ev VALUES (1, 'web', 'x', '1', now(), '{"email": "a"}'),
                      (2, 'crm', 'x', '1', now(), '{"email": "a"}');
});
is($plain->safe_psql('postgres',
	'SELECT count(DISTINCT customer_entity_id) FROM cdp_traits.customer_events'),
	'1', 'stitching works without shared_preload_libraries');
is($plain->safe_psql('postgres',
	"SELECT cdp_traits.version(), current_setting('cdp_traits.naptime')"),
	'0.2.0|1min', 'settings are defined once the library is loaded');
$plain->safe_psql('postgres', 'DROP EXTENSION cdp_traits CASCADE');
is($plain->safe_psql('postgres',
	"SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cdp_traits%'"),
	'0', 'DROP EXTENSION removes the triggers it installed');
$plain->stop;

done_testing();
