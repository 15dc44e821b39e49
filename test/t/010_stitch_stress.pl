# Profile stitching under concurrent writers.
#
# Six pgbench clients run a mix of transactions for $duration seconds:
# inserts of single events, of multi-row batches and of events with random
# ids (ON CONFLICT DO NOTHING), deletes of random events, updates that change
# an event's identifiers (splits and merges) or change nothing stitching
# cares about, and marking entities as calculated (as the attribute worker
# will).  An observer client checks verify_stitching() on its own snapshots
# meanwhile.  The identifiers come from a small pool, so writers collide on
# identifiers and entities all the time.  Afterwards no transaction may have
# failed (deadlock, unique violation), the stitching must be consistent, and
# the partition of events into entities must equal one computed
# independently in plain SQL.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $duration = 15;    # seconds of concurrent writing

my $node = PostgreSQL::Test::Cluster->new('stress');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.enabled = off
max_connections = 30
deadlock_timeout = 100ms
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION cdp_traits;
CREATE TABLE ev (id bigint PRIMARY KEY, source_id text NOT NULL DEFAULT 'web',
                 type text NOT NULL DEFAULT 'x', version text NOT NULL DEFAULT '1',
                 event_time timestamptz NOT NULL DEFAULT now(), payload jsonb);
CREATE SEQUENCE ev_seq;

-- A random payload.  Identifiers of 100 groups of 4 e-mails, 4 phones and 4
-- devices; events link within their group, 1% of linking events link two
-- groups.  Some events carry no identifier, or only blocklisted values.
CREATE FUNCTION stress_payload() RETURNS jsonb LANGUAGE sql VOLATILE AS $$
  SELECT CASE
    WHEN r < 0.06 THEN jsonb_build_object('note', 'no identifier')
    WHEN r < 0.08 THEN jsonb_build_object('email', ' Unknown ', 'phone', 'n/a')
    WHEN r < 0.40 THEN jsonb_build_object('email', e)
    WHEN r < 0.55 THEN jsonb_build_object('phone', p)
    WHEN r < 0.88 THEN jsonb_build_object('email', e, 'phone', p2)
    ELSE jsonb_build_object('phone', p, 'devices', jsonb_build_array(d, d2))
  END
  FROM (SELECT r, 'e' || g || '.' || m1 AS e, 'p' || g || '.' || m2 AS p,
               'p' || coalesce(h, g) || '.' || m2 AS p2,
               'd' || g || '.' || m3 AS d, 'd' || g || '.' || m4 AS d2
          FROM (SELECT random() AS r, 1 + floor(random() * 100)::int AS g,
                       CASE WHEN random() < 0.01 THEN 1 + floor(random() * 100)::int END AS h,
                       1 + floor(random() * 4)::int AS m1, 1 + floor(random() * 4)::int AS m2,
                       1 + floor(random() * 4)::int AS m3, 1 + floor(random() * 4)::int AS m4) x) y
$$;
-- A random existing event id (NULL if there is none at or after the draw).
CREATE FUNCTION stress_pick() RETURNS bigint LANGUAGE sql VOLATILE AS $$
  SELECT id FROM ev WHERE id >= (random() * (SELECT last_value FROM ev_seq))::bigint
   ORDER BY id LIMIT 1
$$;
-- The observer's check: an error if the stitching is inconsistent.
CREATE FUNCTION stress_check() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  p record;
BEGIN
  FOR p IN SELECT * FROM cdp_traits.verify_stitching() LIMIT 1 LOOP
    RAISE EXCEPTION 'verify_stitching() during the run: event %: %', p.event_id, p.problem;
  END LOOP;
END $$;

-- Instrumentation: entities created, by the kind of statement that created
-- them (an entity created by a DELETE is the new half of a split).
CREATE TABLE stress_created (kind text, n bigint);
CREATE FUNCTION stress_count_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.stress_created
  SELECT split_part(lower(btrim(current_query())), ' ', 1), count(*) FROM new_rows;
  RETURN NULL;
END $$;
CREATE TRIGGER stress_count_created AFTER INSERT ON cdp_traits.customer_entities
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stress_count_created();

-- events already there are stitched by attach_events
INSERT INTO ev (id, payload) SELECT nextval('ev_seq'), stress_payload() FROM generate_series(1, 300);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression) VALUES
  ('email', $$payload->>'email'$$),
  ('phone', $$payload->>'phone'$$),
  ('device', $$jsonb_array_elements_text(payload->'devices')$$);
SELECT cdp_traits.attach_events('ev');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM cdp_traits.verify_stitching()'),
	'0', 'events present before attach_events are stitched consistently');

# The workload: one file per kind of transaction, with pgbench weights.
my $dir = PostgreSQL::Test::Utils::tempdir;
my %scripts = (
	'insert_one@8' =>
	  q{INSERT INTO ev (id, payload) VALUES (nextval('ev_seq'), stress_payload());},
	'insert_batch@4' => qq{\\set n random(2, 6)\n}
	  . q{INSERT INTO ev (id, payload) SELECT nextval('ev_seq'), stress_payload() FROM generate_series(1, :n);},
	'insert_random_ids@2' => qq{\\set a random(100000000, 100001500)\n\\set b random(100000000, 100001500)\n}
	  . q{INSERT INTO ev (id, payload) VALUES (:a, stress_payload()), (:b, stress_payload()) ON CONFLICT (id) DO NOTHING;},
	'delete@10' => q{DELETE FROM ev WHERE id = (SELECT stress_pick());},
	'update_identifiers@4' =>
	  q{UPDATE ev SET payload = stress_payload() WHERE id = (SELECT stress_pick());},
	'update_other@2' => qq{\\set n random(1, 1000)\n}
	  . q{UPDATE ev SET payload = payload || jsonb_build_object('n', :n) WHERE id = (SELECT stress_pick());},
	'calculated@1' =>
	  q{UPDATE cdp_traits.customer_entities SET calculated = now() WHERE id = (SELECT id FROM cdp_traits.customer_entities WHERE calculated IS NULL LIMIT 1);},
);
my @files;
foreach my $name (sort keys %scripts)
{
	my ($file, $weight) = split /@/, $name;
	PostgreSQL::Test::Utils::append_to_file("$dir/$file.sql", $scripts{$name} . "\n");
	push @files, '-f', "$dir/$file.sql\@$weight";
}
PostgreSQL::Test::Utils::append_to_file("$dir/observe.sql", "SELECT stress_check();\n");

my @conn = ('-h', $node->host, '-p', $node->port, 'postgres');
my ($w_out, $w_err, $o_out, $o_err) = ('', '', '', '');
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '6', '-j', '2', '-T', $duration, @files, @conn ],
	'>', \$w_out, '2>', \$w_err);
my $observer = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '1', '-T', $duration, '-R', '4', '-f', "$dir/observe.sql", @conn ],
	'>', \$o_out, '2>', \$o_err);
my $t0 = time;
$writers->finish;
my $w_status = $? >> 8;
$observer->finish;
my $o_status = $? >> 8;
note('concurrent phase took ' . (time - $t0) . " s");
note("writers:\n$w_out$w_err");

is($w_status, 0, 'writers: pgbench exited 0');
like($w_out, qr/^number of failed transactions: 0 /m,
	'writers: no failed transactions (no deadlock or serialization failure)');
unlike($w_err, qr/ERROR|FATAL|aborted/,
	'writers: no errors (no unique violation, no deadlock, no aborted client)');
my ($done) = $w_out =~ /^number of transactions actually processed: (\d+)/m;
cmp_ok($done // 0, '>', 500, 'writers: enough transactions ran to mean something');
is($o_status, 0, 'observer: pgbench exited 0');
unlike($o_err, qr/ERROR|FATAL|aborted/,
	'observer: verify_stitching() found nothing on any snapshot during the run');
like($o_out, qr/^number of failed transactions: 0 /m, 'observer: no failed checks');
my ($checks) = $o_out =~ /^number of transactions actually processed: (\d+)/m;
cmp_ok($checks // 0, '>', 10, 'observer: checked repeatedly during the run');

# The end state.
my $q = sub { $node->safe_psql('postgres', shift) };

is($q->('SELECT count(*) FROM cdp_traits.verify_stitching()'), '0',
	'verify_stitching() is empty');

# Identifiers computed independently from the events, with the same rule
# expressions and the blocklist, and the partition they induce, by label
# propagation: each event starts with its own id as label; repeatedly every
# identifier takes the smallest label of its events and every event the
# smallest label of its identifiers, until nothing changes.
$q->(q{
CREATE TABLE x_ids AS
  SELECT e.id, k.a, k.v
    FROM ev e
   CROSS JOIN LATERAL (
         SELECT 'email', e.payload->>'email'
         UNION ALL SELECT 'phone', e.payload->>'phone'
         UNION ALL SELECT 'device', jsonb_array_elements_text(e.payload->'devices')) k(a, v)
   WHERE k.v IS NOT NULL
     AND NOT EXISTS (SELECT FROM cdp_traits.stitching_blocklist b
                      WHERE lower(btrim(b.value)) = lower(btrim(k.v))
                        AND (b.attribute_id IS NULL OR b.attribute_id = k.a));
CREATE TABLE x_lbl AS SELECT DISTINCT id, id AS l FROM x_ids;
CREATE TABLE x_rounds (n int);
DO $$
DECLARE
  changed bigint;
  rounds int := 0;
BEGIN
  LOOP
    WITH il AS (SELECT i.a, i.v, min(x.l) AS m FROM x_ids i JOIN x_lbl x USING (id) GROUP BY 1, 2),
         el AS (SELECT i.id, min(il.m) AS m FROM x_ids i JOIN il USING (a, v) GROUP BY 1)
    UPDATE x_lbl SET l = el.m FROM el WHERE el.id = x_lbl.id AND el.m < x_lbl.l;
    GET DIAGNOSTICS changed = ROW_COUNT;
    rounds := rounds + 1;
    EXIT WHEN changed = 0;
  END LOOP;
  INSERT INTO x_rounds VALUES (rounds);
END $$;
});

my ($events, $with_ids, $entities, $merges, $rounds) = split /\|/, $q->(q{
SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM x_lbl),
       (SELECT count(*) FROM cdp_traits.customer_entities),
       (SELECT count(*) FROM cdp_traits.entity_merges), (SELECT n FROM x_rounds)});
note("end state: $events events, $with_ids with identifiers, $entities entities, "
	  . "$merges merges recorded, label propagation converged in $rounds rounds");
cmp_ok($merges, '>', 0, 'the workload merged entities');
my %created = map { split /\|/ } split /\n/,
  $q->('SELECT kind, sum(n) FROM stress_created GROUP BY 1 ORDER BY 1');
note('entities created by ' . join(', ', map { "$_: $created{$_}" } sort keys %created));
cmp_ok($created{delete} // 0, '>', 0, 'the workload split entities (deletes created entities)');

is($q->(q{
SELECT count(*) FROM x_lbl x
 WHERE NOT EXISTS (SELECT FROM cdp_traits.event_entities ee WHERE ee.event_id = x.id::text)}),
	'0', 'every event with an identifier has an entity');
is($q->(q{
SELECT count(*) FROM cdp_traits.event_entities ee
 WHERE NOT EXISTS (SELECT FROM x_lbl x WHERE x.id::text = ee.event_id)}),
	'0', 'no event without identifiers (or no longer existing) has an entity');
is($q->(q{
SELECT count(*) FROM (
  SELECT i.a, i.v FROM x_ids i JOIN cdp_traits.event_entities ee ON ee.event_id = i.id::text
   GROUP BY 1, 2 HAVING count(DISTINCT ee.customer_entity_id) > 1) s}),
	'0', 'no identifier is carried by events of two entities');
is($q->(q{
WITH carried AS (
  SELECT DISTINCT i.a, i.v, ee.customer_entity_id
    FROM x_ids i JOIN cdp_traits.event_entities ee ON ee.event_id = i.id::text),
stored AS (SELECT attribute_id, value, customer_entity_id FROM cdp_traits.matching)
SELECT (SELECT count(*) FROM (TABLE carried EXCEPT TABLE stored) a)
     + (SELECT count(*) FROM (TABLE stored EXCEPT TABLE carried) b)}),
	'0', 'matching holds exactly the identifiers the events carry, each with its events\' entity');
is($q->(q{
WITH used AS (SELECT DISTINCT customer_entity_id AS id FROM cdp_traits.event_entities)
SELECT (SELECT count(*) FROM (SELECT id FROM cdp_traits.customer_entities EXCEPT TABLE used) a)
     + (SELECT count(*) FROM (TABLE used EXCEPT SELECT id FROM cdp_traits.customer_entities) b)}),
	'0', 'customer_entities holds exactly the entities that have events');
is($q->(q{
SELECT count(*) FROM cdp_traits.entity_merges m
  JOIN cdp_traits.customer_entities c ON c.id = m.merged_id}),
	'0', 'no absorbed entity is still alive');

# The partitions as sets of sets of event ids, in a canonical text form.
my $canon = q{
SELECT count(*) || ' groups, md5 ' || md5(coalesce(string_agg(g, ';' ORDER BY g), ''))
  FROM (SELECT string_agg(id::text, ',' ORDER BY id) AS g FROM (%s) p GROUP BY k) s};
my $stored = $q->(sprintf($canon,
	'SELECT id, customer_entity_id::text AS k FROM cdp_traits.customer_events WHERE customer_entity_id IS NOT NULL'));
my $computed = $q->(sprintf($canon, 'SELECT id, l::text AS k FROM x_lbl'));
is($stored, $computed, 'partition of events into entities equals the independent computation');
if ($stored ne $computed)
{
	diag($q->(q{
SELECT 'event ' || x.id || ': entity ' || coalesce(ee.customer_entity_id::text, '-') || ', label ' || x.l
  FROM x_lbl x LEFT JOIN cdp_traits.event_entities ee ON ee.event_id = x.id::text
 WHERE x.l IN (SELECT l FROM x_lbl x2 LEFT JOIN cdp_traits.event_entities e2 ON e2.event_id = x2.id::text
                GROUP BY l HAVING count(DISTINCT e2.customer_entity_id) <> 1
                    OR count(e2.customer_entity_id) < count(*))
 ORDER BY x.l, x.id LIMIT 50}));
}
is($q->(q{
SELECT count(*) FROM (
  SELECT customer_entity_id FROM cdp_traits.customer_events c JOIN x_lbl x USING (id)
   GROUP BY customer_entity_id HAVING count(DISTINCT x.l) > 1) s}),
	'0', 'no entity spans two independently computed components');

# And a full restitch agrees: it changes nothing.
is($q->(q{SELECT cdp_traits.restitch() = count(DISTINCT customer_entity_id) FROM cdp_traits.event_entities;
SELECT changed_events || '/' || changed_identifiers FROM cdp_traits.stitching_stats()}),
	"t\n0/0", 'restitch() after the run finds the same entities and changes nothing');

# A full pass reads the events with one parallel worker (none if parallel
# query is off), forced here on a table below min_parallel_table_scan_size;
# the pass agrees with the stored state either way.
foreach my $case ([ '', 1 ], [ 'SET max_parallel_workers_per_gather = 0;', 0 ])
{
	my ($setting, $workers) = @$case;
	my $offset = -s $node->logfile;
	is( $q->(
			qq{SET log_min_messages = debug1; SET min_parallel_table_scan_size = 0; $setting
SELECT cdp_traits.restitch() = count(DISTINCT customer_entity_id) FROM cdp_traits.event_entities;
SELECT changed_events || '/' || changed_identifiers FROM cdp_traits.stitching_stats()}),
		"t\n0/0",
		"restitch() with $workers parallel workers changes nothing");
	my $log = substr(slurp_file($node->logfile), $offset);
	like($log, qr/parallel workers planned for reading events: $workers\b/,
		"restitch() reads the events with $workers parallel workers");
}

# A pass that finds the stitching tables empty loads them in bulk and then
# builds their indexes; a build sorts in parallel with at most one worker
# fewer than the machine has processors (the leader sorts its share too).
# Settings that would otherwise give 2 workers even on a tiny table: 32 MB of
# maintenance_work_mem per process, no size threshold.
{
	# (the processors online, as the library counts them: sysconf, not the
	# affinity mask that nproc would report)
	my $ncpu = `getconf _NPROCESSORS_ONLN` + 0;
	my $expected = $ncpu - 1 < 2 ? $ncpu - 1 : 2;
	$q->(q{CREATE TABLE before_empty AS SELECT event_id, customer_entity_id FROM cdp_traits.event_entities;
TRUNCATE cdp_traits.event_entities, cdp_traits.matching;
DELETE FROM cdp_traits.customer_entities;});
	my $offset = -s $node->logfile;
	is( $q->(
			q{SET log_min_messages = debug1; SET min_parallel_table_scan_size = 0;
SET maintenance_work_mem = '256MB'; SET max_parallel_maintenance_workers = 2;
SELECT cdp_traits.restitch() = count(DISTINCT customer_entity_id) FROM before_empty;
SELECT count(*) = (SELECT count(*) FROM before_empty) FROM cdp_traits.event_entities;
SELECT count(*) FROM (SELECT 1 FROM before_empty b LEFT JOIN cdp_traits.event_entities e USING (event_id)
  GROUP BY b.customer_entity_id HAVING count(DISTINCT e.customer_entity_id) <> 1 OR count(e.event_id) < count(*)) x;
SELECT count(*) FROM (SELECT 1 FROM before_empty b JOIN cdp_traits.event_entities e USING (event_id)
  GROUP BY e.customer_entity_id HAVING count(DISTINCT b.customer_entity_id) <> 1) x;
SELECT count(*) FROM cdp_traits.verify_stitching()}),
		"t\nt\n0\n0\n0",
		'restitch() from empty stitching tables gives every event its entity again');
	my $log = substr(slurp_file($node->logfile), $offset);
	if ($expected > 0)
	{
		like($log,
			qr/building index "event_entities_entity" on table "event_entities" with request for $expected parallel workers/,
			"the bulk load's index builds ask for $expected parallel workers on $ncpu processors");
	}
	else
	{
		like($log, qr/building index "event_entities_entity" on table "event_entities" serially/,
			"the bulk load's index builds run serially on one processor");
	}
	my @asked = $log =~ /with request for (\d+) parallel workers/g;
	is(scalar(grep { $_ > $expected } @asked), 0, 'no index build asks for more workers');
}

$node->stop;
done_testing();
