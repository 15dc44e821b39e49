# The toggle log read on a physical standby.  toggles_since() never passes
# over a toggle of a transaction still in progress on the primary because
# it waits for the writers holding the toggle-log lock there; a standby
# sees neither those locks nor the last number given out (the sequence is
# logged ahead), so it handed out a higher seq while a lower one was still
# being written on the primary, and a consumer polling from that seq
# skipped the lower one for good once it committed.  It is refused there
# now, with a hint to read on the primary.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = off
});
$primary->start;
$primary->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE FUNCTION ev(n int, usr text, rem boolean) RETURNS bigint LANGUAGE sql AS $$
  SELECT cdp_traits.ingest_segment_event(jsonb_strip_nulls(jsonb_build_object(
           'event', '00000000-0000-4000-8000-' || lpad(n::text, 12, '0'), 'user', usr,
           'segment', jsonb_build_object('vendor', 1, 'name', 's'),
           'timestamp', '2024-01-01T00:00:00Z', 'remove', CASE WHEN rem THEN true END)))
$$;
SELECT ev(1, 'a', false), ev(2, 'b', false);
});
$primary->backup('bkp');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bkp', has_streaming => 1);
$standby->start;

# a transaction on the primary holds toggle 1 (a's remove) while toggle 2
# (b's remove) commits
my $writer = $primary->background_psql('postgres');
$writer->query_safe(q{BEGIN; SELECT ev(3, 'a', true)});
$primary->safe_psql('postgres', q{SELECT ev(4, 'b', true)});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT count(*) FROM cdp_traits.segment_toggles}),
	'1', 'the standby has the committed toggle (2), not the one in progress (1)');

my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	q{SELECT seq FROM cdp_traits.toggles_since(0, 100)});
isnt($ret, 0, 'toggles_since() on a standby fails instead of handing out toggle 2 before 1')
  or diag("it returned: $stdout");
like($stderr, qr/ERROR:  toggles_since\(\) cannot run on a standby/, 'the error says so');
like($stderr, qr/HINT:  Call toggles_since\(\) on the primary\./, 'and where to read');

# where a new consumer starts: 2 would be given while 1 is in progress
($ret, $stdout, $stderr) = $standby->psql('postgres', q{SELECT cdp_traits.toggles_position()});
isnt($ret, 0, 'toggles_position() on a standby fails instead of giving 2 while 1 is in progress')
  or diag("it returned: $stdout");
like($stderr, qr/ERROR:  toggles_position\(\) cannot run on a standby/, 'the error says so');

$writer->query_safe('COMMIT');
$writer->quit;
$primary->wait_for_catchup($standby);

# on the primary the reader sees both, in order
is($primary->safe_psql('postgres',
	q{SELECT string_agg(seq || ':' || user_id, ' ' ORDER BY seq) FROM cdp_traits.toggles_since(0, 100)}),
	'1:a 2:b', 'the primary hands out both toggles');
is($standby->safe_psql('postgres',
	q{SELECT string_agg(seq || ':' || user_id, ' ' ORDER BY seq) FROM cdp_traits.segment_toggles}),
	'1:a 2:b', 'the standby has the log, to read as a table');

# health() on the standby: no launcher runs there, which is as it should be
is($standby->safe_psql('postgres',
	q{SELECT status || ': ' || detail FROM cdp_traits.health() WHERE item = 'worker'}),
	'ok: a standby: the worker runs on the primary (here it starts if this server is promoted)',
	'health() on a standby does not report the missing launcher');

$standby->stop;
$primary->stop;
done_testing();
