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

# A database name with a space must be double-quoted in cdp_traits.database;
# unquoted, the list does not parse, and the hint says what to do (it spoke
# of commas only).
$node->append_conf('postgresql.conf', "cdp_traits.database = 'postgres, My Shop'\ncdp_traits.enabled = on\n");
$log_offset = -s $node->logfile;
$node->restart;
ok( $node->wait_for_log(
		qr/invalid list syntax in cdp_traits.database, no jobs run\n.*HINT:  .*double-quote a name that contains a comma or white space/,
		$log_offset),
	'a list with an unquoted name with a space is reported, with the way out');

$node->safe_psql('postgres', 'DROP EXTENSION cdp_traits');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_namespace WHERE nspname = 'cdp_traits'"),
	'1', 'DROP EXTENSION keeps the schema (it is not tied to the extension, for pg_dump)');

$node->stop;

done_testing();
