# Events that arrive by logical replication are stitched as they are applied.
# The apply worker runs as a replica session (no ordinary trigger fires) and
# fires row triggers only; attach_events installs a row trigger and a
# TRUNCATE trigger enabled for replica sessions.  A publisher streams an
# events table to a subscriber that has it attached: the initial copy,
# inserts that merge entities, updates and deletes that split them, and a
# TRUNCATE give the subscriber the same entities as a database where the
# same statements ran directly.  Segment events streamed into
# cdp_traits.segment_events are applied by its replica row trigger: the same
# memberships, toggles and profiles as the same events ingested directly.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;

my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = off
});
$sub->start;

my $table = q{CREATE TABLE ev (id uuid PRIMARY KEY, source_id text, type text, version text,
                              event_time timestamptz, payload jsonb)};
$pub->safe_psql('postgres', "$table; CREATE PUBLICATION cdp_pub FOR TABLE ev;");

# Segment events too: the publisher has a plain table of that name (a
# staging database), without seq: the subscriber numbers what it receives.
$pub->safe_psql('postgres', q{
CREATE SCHEMA cdp_traits;
CREATE TABLE cdp_traits.segment_events (event uuid, user_id text, vendor integer, segment text,
                                        "timestamp" text, remove boolean, value text);
ALTER PUBLICATION cdp_pub ADD TABLE cdp_traits.segment_events;
});

# the subscriber's database, and a control database on the same node where
# the statements run directly
for my $db ('cdp', 'ctl')
{
	$sub->safe_psql('postgres', "CREATE DATABASE $db");
	$sub->safe_psql($db, qq{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
$table;
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', \$\$lower(btrim(payload->>'email'))\$\$),
  ('cookie', \$\$payload->>'cookie'\$\$),
  ('phone', \$\$jsonb_array_elements_text(payload->'phones')\$\$);
SELECT cdp_traits.attach_events('ev');
});
}

# The entities as groups of events (entity ids are random), the identifiers,
# and what verify_stitching() finds.
my $state = q{
SELECT coalesce(string_agg(g, ' | ' ORDER BY g), '(none)') || ' [' ||
       (SELECT count(*) FROM cdp_traits.customer_entities) || ' entities, ' ||
       (SELECT count(*) FROM cdp_traits.matching) || ' identifiers, ' ||
       (SELECT count(*) FROM cdp_traits.verify_stitching()) || ' problems]'
  FROM (SELECT string_agg(left(c.id::text, 8), ',' ORDER BY c.id) AS g
          FROM cdp_traits.customer_events c GROUP BY c.customer_entity_id) s};

# run: the statements on the publisher and in the control database
sub run
{
	my ($sql) = @_;
	$pub->safe_psql('postgres', $sql);
	$sub->safe_psql('ctl', $sql);
}

# compare: after the subscriber has applied everything
sub compare
{
	my ($what) = @_;
	$pub->wait_for_catchup('cdp_sub');
	my $ctl = $sub->safe_psql('ctl', $state);
	is($sub->safe_psql('cdp', $state), $ctl, "$what: the subscriber has the same entities");
	return $ctl;
}

# The segment memberships, the toggle log (in order) and profiles, and the
# events kept.
my $segments = q{
SELECT coalesce((SELECT string_agg(format('%s/%s/%s:%s%s', vendor, segment, user_id, member,
                                          coalesce('=' || value, '')),
                                   ' ' ORDER BY vendor, segment, user_id)
                   FROM cdp_traits.segment_memberships), '(none)') || ' | toggles ' ||
       coalesce((SELECT string_agg(format('%s/%s:%s', segment, user_id, member), ' ' ORDER BY seq)
                   FROM cdp_traits.segment_toggles WHERE vendor > 0), '-') || ' | profiles ' ||
       (SELECT count(*) FROM cdp_traits.segment_profiles) || ' | events ' ||
       (SELECT count(*) FROM cdp_traits.segment_events)};

sub compare_segments
{
	my ($what) = @_;
	$pub->wait_for_catchup('cdp_sub');
	my $ctl = $sub->safe_psql('ctl', $segments);
	is($sub->safe_psql('cdp', $segments), $ctl, "$what: the subscriber has the same segments");
	return $ctl;
}

# Events before the subscription: the initial copy.
run(q{
INSERT INTO ev
SELECT md5('a' || i)::uuid, 'web', 'view', '1', '2025-01-01'::timestamptz + i * interval '1 minute',
       jsonb_build_object('email', CASE WHEN i % 3 = 0 THEN ' User' || (i % 17) || '@x ' END,
                          'cookie', 'c' || (i % 23), 'phones', jsonb_build_array('p' || (i % 29)))
  FROM generate_series(1, 300) i;
});
my $conn = $pub->connstr('postgres') =~ s/'/''/gr;
$sub->safe_psql('cdp', "CREATE SUBSCRIPTION cdp_sub CONNECTION '$conn' PUBLICATION cdp_pub");
$sub->poll_query_until('cdp',
	"SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')")
  or die 'the initial copy did not finish';
run(q{
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
SELECT md5('s' || i)::uuid, 'u' || (i % 7), 1, 'seg' || (i % 3), '2025-01-01T10:00:00Z', i % 5 = 0
  FROM generate_series(1, 60) i;
});
my $first = compare('initial copy');
like($first, qr/\[\d+ entities, \d+ identifiers, 0 problems\]$/, 'initial copy: stitched, no problems');
cmp_ok(scalar(() = $first =~ /,/g), '>', 100, 'initial copy: events were linked');

# Streamed changes: single inserts that merge, a multi-row insert, several
# statements in one transaction.
run(q{
INSERT INTO ev VALUES (md5('b1')::uuid, 'app', 'login', '1', '2025-02-01', '{"email": "user1@x", "cookie": "c2"}');
INSERT INTO ev VALUES (md5('b2')::uuid, 'app', 'login', '1', '2025-02-01', '{"email": "solo@x"}');
INSERT INTO ev SELECT md5('b' || i)::uuid, 'crm', 'buy', '1', '2025-02-02', jsonb_build_object('cookie', 'n' || i, 'phones', jsonb_build_array('p' || i, 'q' || i))
  FROM generate_series(3, 40) i;
BEGIN;
INSERT INTO ev VALUES (md5('b41')::uuid, 'pos', 'buy', '1', '2025-02-03', '{"email": "solo@x", "phones": ["p5"]}');
INSERT INTO ev VALUES (md5('b42')::uuid, 'pos', 'buy', '1', '2025-02-03', '{"phones": ["q7", "p11"]}');
COMMIT;
});
compare('inserts');
like(compare_segments('initial copy of segment events'), qr/ \| events 60$/,
	'segment events of the initial copy applied');

# Segment events streamed: single events that add and remove, several in
# one statement and in one transaction, an event whose id was seen (dropped
# on both).
run(q{
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (md5('t1')::uuid, 'u1', 1, 'seg1', '2025-02-01T10:00:00Z', true);
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove, value)
VALUES (md5('t2')::uuid, 'new', 2, 'vip', '2025-02-01T10:00:00Z', false, 'gold');
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (md5('t3')::uuid, 'u1', 1, 'seg1', '2025-02-01T11:00:00Z', false),
       (md5('t4')::uuid, 'u2', 1, 'seg2', '2025-02-01T11:00:00Z', true),
       (md5('s7')::uuid, 'u2', 1, 'seg2', '2025-02-01T11:01:00Z', false);
BEGIN;
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (md5('t5')::uuid, 'new', 2, 'vip', '2025-02-02T10:00:00Z', true);
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (md5('t6')::uuid, 'new', 2, 'vip', '2025-02-02T11:00:00Z', false);
COMMIT;
});
my $seg = compare_segments('streamed segment events');
like($seg, qr{ 2/vip/new:t=gold \|.* vip/new:f vip/new:t \|}, 'streamed segment events: toggles logged');
like($seg, qr/ \| events 66$/, 'streamed segment events: the repeated id dropped');

# A large remote transaction, stitched row by row under the exclusive
# stitching lock once it has taken cdp_traits.max_identifier_locks key locks.
run(q{
INSERT INTO ev
SELECT md5('big' || i)::uuid, 'web', 'view', '1', '2025-02-05'::timestamptz + i * interval '1 second',
       jsonb_build_object('email', 'big' || (i % 400) || '@x', 'cookie', 'bc' || (i % 700),
                          'phones', jsonb_build_array('p' || (i % 50)))
  FROM generate_series(1, 2000) i;
});
compare('a large transaction');

# Updates that move events between entities (splits and merges), an update
# that touches no identifier, deletes that split.
run(q{
UPDATE ev SET payload = '{"email": "moved@x"}' WHERE id IN (md5('b41')::uuid, md5('a3')::uuid);
UPDATE ev SET type = 'seen' WHERE id = md5('a4')::uuid;
DELETE FROM ev WHERE id IN (md5('b1')::uuid, md5('a6')::uuid, md5('a9')::uuid);
DELETE FROM ev WHERE payload->>'cookie' = 'c5';
});
my $after = compare('updates and deletes');
like($after, qr/ 0 problems\]$/, 'updates and deletes: verify_stitching() is empty');

# Events written on the subscriber itself (an ordinary session) join the
# same stitching.
$sub->safe_psql($_, q{
INSERT INTO ev VALUES (md5('local')::uuid, 'web', 'view', '1', '2025-03-01', '{"email": "solo@x", "cookie": "c7"}');
}) for ('cdp', 'ctl');
compare('a local insert');

# TRUNCATE (the subscriber's own rows go too) empties stitching, and
# streaming goes on.
run('TRUNCATE ev, cdp_traits.segment_events');
run(q{
INSERT INTO cdp_traits.segment_events (event, user_id, vendor, segment, "timestamp", remove)
VALUES (md5('t7')::uuid, 'u1', 1, 'seg1', '2025-03-01T10:00:00Z', true);
});
like(compare_segments('segment events after a truncate'), qr/ \| events 1$/,
	'segment events after a truncate: memberships kept, the new event applied');
is(compare('truncate'), '(none) [0 entities, 0 identifiers, 0 problems]', 'truncate: nothing left');
run(q{
INSERT INTO ev VALUES (md5('c1')::uuid, 'web', 'view', '1', '2025-04-01', '{"email": "again@x"}'),
                      (md5('c2')::uuid, 'app', 'view', '1', '2025-04-01', '{"email": "AGAIN@x"}');
});
like(compare('after the truncate'), qr/^[0-9a-f]{8},[0-9a-f]{8} \[1 entities/,
	'after the truncate: the two events are one customer');

$sub->stop;
$pub->stop;
done_testing();
