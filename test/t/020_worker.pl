# The background worker (SPEC section 7).
#
# A server preloads cdp_traits with a naptime of one second and four listed
# databases: postgres (the jobs under test), dropme (dropped while the worker
# serves it), noext (the extension is created late) and nosuchdb (never
# exists).  Checked: the worker is visible in pg_stat_activity; new events
# get their attributes within two naptimes and a job_runs row says so; a
# failing custom attribute does not stop the others and its error is in
# job_runs; missing databases and extensions are logged once; the jobs run
# as the extension owner (not a superuser in noext) or as cdp_traits.role,
# with that role's privileges (a missing role is a job error);
# SIGHUP applies a new naptime at once and turns the jobs off and on; the job
# timeout (worker and run_jobs()); a job worker terminated or killed in the
# middle of a job leaves a 'running' row that the next cycle marks failed;
# DROP DATABASE of a served database goes through promptly; the launcher
# comes back after pg_terminate_backend and kill -9 (and the server
# survives); a server restart resumes the work.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $naptime = 1;    # seconds
# Slack for "promptly" on a loaded two-core machine.
my $slack = 3;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'cdp_traits'
cdp_traits.database = 'postgres, dropme, noext, nosuchdb'
cdp_traits.naptime = '${naptime}s'
cdp_traits.enabled = on
max_worker_processes = 16
restart_after_crash = on
});
$node->start;

# Helpers.
sub launcher_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdp_traits launcher'");
}

sub max_run
{
	my $db = shift // 'postgres';
	return $node->safe_psql($db, 'SELECT coalesce(max(id), 0) FROM cdp_traits.job_runs');
}

# Wait until a whole cycle ran after job run $after (its last job is recorded).
sub wait_for_cycle
{
	my ($after, $db) = @_;
	$db //= 'postgres';
	return $node->poll_query_until($db,
		"SELECT count(*) > 0 FROM cdp_traits.job_runs
		  WHERE job = 'prune_job_runs' AND status <> 'running' AND id > $after");
}

sub log_count
{
	my $re = shift;
	my $log = slurp_file($node->logfile);
	my @hits = ($log =~ /$re/g);
	return scalar @hits;
}

sub set_conf
{
	$node->append_conf('postgresql.conf', shift);
	$node->reload;
}

# kill -9 a server process; wait until the server has reinitialized.
sub kill9_and_wait
{
	my $pid = shift;
	my $offset = -s $node->logfile;
	kill 'KILL', $pid;
	$node->wait_for_log(
		qr/all server processes terminated; reinitializing.*database system is ready to accept connections/s,
		$offset);
	return $node->poll_query_until('postgres', undef, '');
}

# The job worker of postgres, once it has been running a job whose SQL
# matches $what for 1.5 seconds (so not one cut short by a 1s job timeout).
sub job_worker_in
{
	my $what = shift;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'cdp_traits worker' AND datname = 'postgres'
		    AND state = 'active' AND query LIKE '%$what%'
		    AND query_start < now() - interval '1.5 s'")
	  or die "no job worker running $what";
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity
		  WHERE backend_type = 'cdp_traits worker' AND datname = 'postgres'");
}

# --- the worker is there, and waits for what is missing -------------------

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE application_name = 'cdp_traits worker' AND datname IS NULL
		    AND backend_type = 'cdp_traits launcher'"),
	'the worker is visible in pg_stat_activity as "cdp_traits worker"');

$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', 'CREATE EXTENSION cdp_traits');
$node->safe_psql('postgres', 'CREATE DATABASE noext');
$node->wait_for_log(qr/extension "cdp_traits" is missing in database "postgres"/);

# --- new events get their attributes --------------------------------------

$node->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION cdp_traits;
CREATE TABLE events (id bigint PRIMARY KEY, source_id text, type text, version text,
                     event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('events');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('email',    '{"type": "max", "value": "payload->>''email''"}'),
  ('n_events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}'),
  ('broken',   '{"type": "custom", "query": "SELECT max(1 / (length(type) - length(type))) AS value FROM base"}');
});
# let the definitions' first (full) run go by
wait_for_cycle(max_run());

my $mark = max_run();
my $t0 = time;
$node->safe_psql('postgres', q{
INSERT INTO events VALUES
  (1, 'web', 'view', '1', now(), '{"email": "ann@x"}'),
  (2, 'crm', 'buy',  '1', now(), '{"email": "ann@x"}'),
  (3, 'web', 'view', '1', now(), '{"email": "bob@x"}');
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM cdp_traits.pivoted_customer_attributes
		  WHERE email IS NOT NULL AND n_events IS NOT NULL"),
	'attributes of new events are calculated by the worker');
my $elapsed = time - $t0;
cmp_ok($elapsed, '<', 2 * $naptime + $slack,
	"within two naptimes (took ${elapsed}s, ${slack}s allowed for a loaded machine)");
wait_for_cycle($mark);
is( $node->safe_psql('postgres', qq{
SELECT status, rows, error, run_by,
       run_as = (SELECT extowner::regrole::name FROM pg_extension WHERE extname = 'cdp_traits'),
       detail->'errors'->>'broken', finished_at IS NOT NULL
  FROM cdp_traits.job_runs
 WHERE job = 'calculate_attributes' AND id > $mark AND rows > 0}),
	'partial|2|attribute "broken": division by zero|worker|t|division by zero|t',
	'a job_runs row says the entities were calculated, and carries the failing attribute\'s error');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT job || ':' || status, ',') FROM cdp_traits.job_runs
		  WHERE id > $mark AND job <> 'calculate_attributes' AND status <> 'running'"),
	'prune_job_runs:succeeded,refresh_context:succeeded',
	'the other jobs of the cycle succeed');
is( $node->safe_psql('postgres', q{
SELECT string_agg(item || ':' || status, ',' ORDER BY item) FROM cdp_traits.health()
 WHERE item IN ('worker', 'job calculate_attributes', 'job refresh_context', 'attributes')}),
	'attributes:warning,job calculate_attributes:warning,job refresh_context:ok,worker:ok',
	'health() says the worker serves the database, and warns of the failing attribute');
like( $node->safe_psql('postgres',
		"SELECT detail FROM cdp_traits.health() WHERE item = 'attributes'"),
	qr/^1 of \d+ definitions failed in their last calculation: broken$/,
	'... naming it');
# an entity marked two hours ago and still not calculated (seen inside a
# transaction that rolls back, so the worker never sees it)
like( $node->safe_psql('postgres', q{
BEGIN;
UPDATE cdp_traits.customer_entities SET calculated = NULL, modified = now() - interval '2 hours'
 WHERE id = (SELECT id FROM cdp_traits.customer_entities ORDER BY id LIMIT 1);
SELECT status || ': ' || detail FROM cdp_traits.health() WHERE item = 'entities to calculate';
ROLLBACK;}),
	qr/^warning: \d+ entit(y waits for its|ies wait for their) attributes, the oldest since 0?2:00:\d\d ago$/,
	'health() warns of an entity waiting longer than the worker should take');

# --- logged once, checked again -------------------------------------------

# several naptimes have gone by since the server started
is(log_count(qr/database "nosuchdb" does not exist/), 1,
	'a listed database that does not exist is logged once');
is(log_count(qr/extension "cdp_traits" is missing in database "noext"/), 1,
	'a database without the extension is logged once');
is(log_count(qr/extension "cdp_traits" is missing in database "postgres"/), 1,
	'... and so was postgres before CREATE EXTENSION');
# noext gets an owner that is not a superuser (created as one, then demoted)
$node->safe_psql('noext', q{
SET client_min_messages = warning;
CREATE ROLE cdp_owner SUPERUSER;
SET ROLE cdp_owner;
CREATE EXTENSION cdp_traits;
CREATE TABLE events (id bigint PRIMARY KEY, source_id text, type text, version text,
                     event_time timestamptz, payload jsonb);
INSERT INTO cdp_traits.stitching_rules (attribute_id, value_expression)
VALUES ('email', $$payload->>'email'$$);
SELECT cdp_traits.attach_events('events');
INSERT INTO cdp_traits.attributes (id, definition) VALUES
  ('n_events', '{"type": "custom", "query": "SELECT count(*) AS value FROM base"}');
RESET ROLE;
ALTER ROLE cdp_owner NOSUPERUSER;
});
ok(wait_for_cycle(0, 'noext'), 'jobs run once the extension is created');
ok($node->log_contains(qr/extension "cdp_traits" is installed in database "noext"/),
	'... and that is logged');

# --- the role jobs run as -------------------------------------------------

$node->safe_psql('noext',
	q{INSERT INTO events VALUES (1, 'web', 'view', '1', now(), '{"email": "ann@x"}')});
ok( $node->poll_query_until('noext',
		"SELECT count(*) = 1 FROM cdp_traits.pivoted_customer_attributes WHERE n_events IS NOT NULL"),
	'jobs run as the extension owner, which need not be a superuser');
is( $node->safe_psql('noext',
		"SELECT string_agg(DISTINCT run_as || ':' || status, ',') FROM cdp_traits.job_runs"),
	'cdp_owner:succeeded', '... and job_runs says so');

my $launcher = launcher_pid();
$mark = max_run();
set_conf("cdp_traits.role = 'no_such_role'\n");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM cdp_traits.job_runs
		  WHERE id > $mark AND job = 'calculate_attributes' AND status = 'failed'
		    AND error = 'role \"no_such_role\" does not exist'"),
	'a missing cdp_traits.role fails the jobs, recorded in job_runs');
is(launcher_pid(), $launcher, '... without restarting the worker');

# cdp_traits.role: a member of noext's owner; in postgres it has no rights
$node->safe_psql('postgres', 'CREATE ROLE cdp_jobs IN ROLE cdp_owner');
my $noext_mark = max_run('noext');
$mark = max_run();
set_conf("cdp_traits.role = 'cdp_jobs'\n");
$node->safe_psql('noext',
	q{INSERT INTO events VALUES (2, 'web', 'view', '1', now(), '{"email": "bob@x"}')});
ok( $node->poll_query_until('noext',
		"SELECT count(*) = 2 FROM cdp_traits.pivoted_customer_attributes WHERE n_events IS NOT NULL"),
	'jobs run as the role in cdp_traits.role');
is( $node->safe_psql('noext',
		"SELECT string_agg(DISTINCT run_as || ':' || status, ',') FROM cdp_traits.job_runs
		  WHERE id > $noext_mark AND job <> 'prune_job_runs'"),
	'cdp_jobs:succeeded', '... and job_runs says so');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM cdp_traits.job_runs
		  WHERE id > $mark AND job = 'calculate_attributes' AND status = 'failed'
		    AND run_as = 'cdp_jobs' AND error = 'permission denied for function calculate_attributes'"),
	'... with that role\'s privileges (none in postgres)');

# What a job's SQL leaves to the end of its transaction runs as that role
# too, not as the worker's superuser: a context query (or a definition)
# that reads an object of another role (a dbt model's function, here) runs
# that role's code as cdp_traits.role, and that code may queue a deferred
# trigger of its own, which fires at the job's commit.
$node->safe_psql('noext', q{
SET client_min_messages = warning;
CREATE ROLE dbt_role;
CREATE SCHEMA dbt AUTHORIZATION dbt_role;
GRANT USAGE ON SCHEMA dbt TO PUBLIC;
SET ROLE dbt_role;
CREATE TABLE dbt.seen (who name, super boolean);
CREATE TABLE dbt.queue (a int);
GRANT INSERT ON dbt.seen, dbt.queue TO PUBLIC;
CREATE FUNCTION dbt.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO dbt.seen SELECT current_user, r.rolsuper FROM pg_catalog.pg_roles r
	 WHERE r.rolname = current_user;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON dbt.queue
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dbt.note();
CREATE FUNCTION dbt.ltv() RETURNS text LANGUAGE plpgsql AS
$$ BEGIN INSERT INTO dbt.queue VALUES (1); RETURN '42'; END $$;
RESET ROLE;
SET ROLE cdp_owner;
INSERT INTO cdp_traits.context (key, query) VALUES ('ltv', 'SELECT dbt.ltv()');
});
ok($node->poll_query_until('noext', 'SELECT count(*) > 0 FROM dbt.seen'),
	'a job queues a deferred trigger of another role');
is($node->safe_psql('noext', "SELECT string_agg(DISTINCT who || ':' || super, ',') FROM dbt.seen"),
	'cdp_jobs:false', '... which fires as cdp_traits.role, not as a superuser');
$node->safe_psql('noext', q{
DELETE FROM cdp_traits.context WHERE key = 'ltv';
DROP SCHEMA dbt CASCADE;
DROP ROLE dbt_role;
});
set_conf("cdp_traits.role = ''\n");

# --- SIGHUP: naptime and enabled ------------------------------------------

set_conf("cdp_traits.naptime = '1000s'\n");
sleep(2);    # the reload arrives, a cycle under way ends
my $before = max_run();
sleep(3);
is(max_run(), $before, 'after SIGHUP with naptime 1000s no cycle starts');
$t0 = time;
set_conf("cdp_traits.naptime = '${naptime}s'\n");
ok(wait_for_cycle($before), 'after SIGHUP with naptime 1s cycles resume');
$elapsed = time - $t0;
cmp_ok($elapsed, '<', $naptime + $slack, "... at once (took ${elapsed}s)");

$launcher = launcher_pid();
set_conf("cdp_traits.enabled = off\n");
sleep(2);
$before = max_run();
sleep(3);
is(max_run(), $before, 'cdp_traits.enabled = off: no jobs run');
is(launcher_pid(), $launcher, '... and the worker stays');
set_conf("cdp_traits.enabled = on\n");
ok(wait_for_cycle($before), 'cdp_traits.enabled = on: jobs run again');

# --- a read-only database -------------------------------------------------

# default_transaction_read_only = on (how some services stop writes when the
# disk fills up): no jobs run, and that is logged once -- not an error per
# statement every naptime, as it was ("cannot execute UPDATE in a read-only
# transaction").  Turned off, the jobs run again.
$node->safe_psql('postgres', 'ALTER DATABASE noext SET default_transaction_read_only = on');
sleep(2);    # a cycle under way (connected before) ends
$before = max_run('noext');
sleep(3 * $naptime);
is(max_run('noext'), $before, 'in a read-only database no jobs run');
is(log_count(qr/database "noext" is read-only \(default_transaction_read_only\), no jobs run there/),
	1, '... and that is logged once');
is(log_count(qr/in a read-only transaction/), 0, '... with no errors');
$node->safe_psql('postgres', 'ALTER DATABASE noext RESET default_transaction_read_only');
ok(wait_for_cycle($before, 'noext'), 'writable again, the jobs run');
ok($node->log_contains(qr/database "noext" accepts writes again, jobs run there/),
	'... and that is logged');

# --- DROP EXTENSION during a cycle ----------------------------------------

# The job under way ends (DROP EXTENSION waits for it; the next job may start
# before the drop commits, and fail); the cycle then stops instead of failing
# at every step of the jobs left (recording its start, the job, its outcome:
# relation "cdp_traits.job_runs" does not exist, three ERRORs a job, up to
# prune_job_runs); the next cycle logs the missing extension once.
$node->safe_psql('noext',
	q{INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(2)::text')});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'noext'
	    AND backend_type = 'cdp_traits worker' AND query LIKE '%refresh_context%'")
  or die 'no job worker in noext';
$node->safe_psql('noext', 'DROP EXTENSION cdp_traits CASCADE');
my $deadline = time + 60;
usleep(100_000)
  while log_count(qr/extension "cdp_traits" is missing in database "noext"/) < 2 && time < $deadline;
is(log_count(qr/extension "cdp_traits" is missing in database "noext"/), 2,
	'after DROP EXTENSION during a job the next cycle logs the missing extension');
is(log_count(qr/QUERY:  WITH pruned AS \(DELETE FROM cdp_traits\.job_runs/), 0,
	'... and the cycle under way ran no job once the extension was gone');

# --- a restore under way --------------------------------------------------

# While pg_restore is connected to a database the worker serves, no cycle
# runs there: its rows in the tables the restore loads (the runs) collided
# with the dumped ones.  Cycles resume when it has left.
my ($rin, $rout, $rerr) = ('', '', '');
my $restore = IPC::Run::start(
	[
		'psql', '-X', '-d',
		$node->connstr('postgres') . ' application_name=pg_restore',
		'-c', 'SELECT pg_sleep(8)'
	],
	'<', \$rin, '>', \$rout, '2>', \$rerr);
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pg_restore'");
sleep(2);    # a cycle under way ends
$before = max_run();
sleep(3);
is(max_run(), $before, 'no jobs run while pg_restore is connected');
cmp_ok(log_count(qr/pg_restore is connected to database "postgres", no jobs run there/),
	'>', 0, '... and the log says why');
$restore->finish;
ok(wait_for_cycle($before), 'jobs run again once it has left');

# Only a superuser's session is taken for pg_restore (only a superuser can
# create the extension, and so restore it): any role that may connect could
# otherwise name its session pg_restore and stop the jobs for as long as it
# stays connected.
$node->safe_psql('postgres', 'CREATE ROLE not_a_restore LOGIN');
my $fake = IPC::Run::start(
	[
		'psql', '-X', '-d',
		$node->connstr('postgres') . ' user=not_a_restore application_name=pg_restore',
		'-c', 'SELECT pg_sleep(60)'
	],
	'<', \$rin, '>', \$rout, '2>', \$rerr);
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pg_restore'");
my $restore_logs = log_count(qr/pg_restore is connected to database "postgres", no jobs run there/);
$before = max_run();
ok(wait_for_cycle($before), "jobs run while another role's session is named pg_restore");
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'"),
	'1', '... which is still connected');
is(log_count(qr/pg_restore is connected to database "postgres", no jobs run there/),
	$restore_logs, '... and the log does not take it for a restore');
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pg_restore'");
$fake->finish;
$node->safe_psql('postgres', 'DROP ROLE not_a_restore');

# --- the job timeout ------------------------------------------------------

set_conf("cdp_traits.job_timeout = '1s'\n");
$mark = max_run();
$node->safe_psql('postgres',
	q{INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(5)::text')});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM cdp_traits.job_runs
		  WHERE id > $mark AND job = 'prune_job_runs' AND status = 'succeeded'
		    AND pid IN (SELECT pid FROM cdp_traits.job_runs
		                 WHERE id > $mark AND job = 'refresh_context' AND status = 'failed')"),
	'a cycle whose refresh_context fails goes on with the next jobs');
is( $node->safe_psql('postgres', "
SELECT string_agg(r.job || ':' || r.status || ':' || r.error || ':' || (r.detail->>'sqlstate'), ',' ORDER BY r.id)
  FROM cdp_traits.job_runs r
 WHERE r.id > $mark AND r.job <> 'prune_job_runs'
   AND r.pid = (SELECT min(pid) FROM cdp_traits.job_runs
                 WHERE id > $mark AND job = 'refresh_context' AND status = 'failed')"),
	'refresh_context:failed:canceling statement due to statement timeout:57014,'
	  . 'calculate_attributes:failed:canceling statement due to statement timeout:57014',
	'jobs over cdp_traits.job_timeout are cancelled and recorded as failed');

# run_jobs() bounds each job the same way, unless the caller's own timeout comes first
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT cdp_traits.run_jobs()');
is($ret, 0, 'run_jobs() returns although jobs time out');
like($stderr, qr/job refresh_context failed: canceling statement due to statement timeout/,
	'... warning about the job that timed out');
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '500ms'; SELECT cdp_traits.run_jobs()");
like($stderr, qr/ERROR:  canceling statement due to statement timeout/,
	'the caller\'s shorter statement_timeout cancels run_jobs() itself');

# a context query over cdp_traits.context_timeout fails alone: its key records
# the timeout, refresh_context is partial, calculate_attributes runs (partial
# only for the broken attribute of the tests above) instead of failing (one
# reload for both settings, so that no cycle refreshes the slow key in between)
$mark = max_run();
set_conf("cdp_traits.job_timeout = '30min'\ncdp_traits.context_timeout = '300ms'\n");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM cdp_traits.job_runs
		  WHERE id > $mark AND job = 'prune_job_runs' AND status = 'succeeded'
		    AND pid IN (SELECT pid FROM cdp_traits.job_runs
		                 WHERE id > $mark AND job = 'refresh_context' AND status = 'partial')"),
	'a cycle with a context query over context_timeout runs to its end');
is( $node->safe_psql('postgres', "
SELECT string_agg(r.job || ':' || r.status || ':' || coalesce(r.error, '-'), ',' ORDER BY r.id)
  FROM cdp_traits.job_runs r
 WHERE r.id > $mark AND r.job <> 'prune_job_runs'
   AND r.pid = (SELECT min(pid) FROM cdp_traits.job_runs
                 WHERE id > $mark AND job = 'refresh_context' AND status = 'partial')"),
	'refresh_context:partial:context key "slow": query canceled after cdp_traits.context_timeout (300ms),'
	  . 'calculate_attributes:partial:attribute "broken": division by zero',
	'... only the slow key fails, and the calculation runs');
is( $node->safe_psql('postgres', "SELECT error FROM cdp_traits.context WHERE key = 'slow'"),
	'query canceled after cdp_traits.context_timeout (300ms)',
	'... and the key says why');
set_conf("cdp_traits.context_timeout = '5min'\n");

# --- interrupted jobs -----------------------------------------------------

# terminated in the middle of a job: 'running' until the next cycle marks it
my $pid = job_worker_in('refresh_context');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM cdp_traits.job_runs WHERE status = 'running' AND pid = $pid"),
	'1', 'a running job has a running row');
$node->safe_psql('postgres', "DELETE FROM cdp_traits.context WHERE key = 'slow'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM cdp_traits.job_runs
		  WHERE pid = $pid AND job = 'refresh_context' AND status = 'failed'
		    AND error LIKE 'the worker stopped before the job finished%'"),
	'a job whose worker was terminated is marked failed by the next cycle');
ok($node->log_contains(qr/marked 1 interrupted job run\(s\) in database "postgres" as failed/),
	'... and that is logged');

# --- query cancel ---------------------------------------------------------

# The launcher runs no query: pg_cancel_backend() leaves it running (it used
# to exit with "canceling statement due to user request").
$launcher = launcher_pid();
$node->safe_psql('postgres', "SELECT pg_cancel_backend($launcher)");
$mark = max_run();
ok(wait_for_cycle($mark), 'after a cancel of the launcher cycles go on');
is(launcher_pid(), $launcher, '... and the launcher is the same process');

# A cancel that comes while a job worker records the outcome of a job (here
# it waits for a lock on job_runs) has no job to cancel: the job committed,
# its outcome is recorded, the cycle goes on.  (The cancel used to abort the
# recording: the row stayed 'running' and the next cycle marked the job
# failed, "the worker stopped", although it had succeeded.)
$node->safe_psql('postgres',
	q{INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(2.5)::text')});
$pid = job_worker_in('refresh_context');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE cdp_traits.job_runs IN SHARE MODE');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE pid = $pid AND wait_event_type = 'Lock' AND query LIKE 'UPDATE cdp_traits.job_runs%'"),
	'the job worker waits to record the outcome of its job');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
usleep(200_000);
$locker->query_safe('COMMIT');
$locker->quit;
$node->safe_psql('postgres', "DELETE FROM cdp_traits.context WHERE key = 'slow'");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM cdp_traits.job_runs WHERE pid = $pid AND job = 'prune_job_runs'
		    AND status <> 'running'"),
	'a cancel while the outcome is recorded does not end the cycle');
is( $node->safe_psql('postgres',
		"SELECT status || ':' || (finished_at IS NOT NULL) || ':' || coalesce(error, '-')
		   FROM cdp_traits.job_runs WHERE pid = $pid AND job = 'refresh_context'"),
	'succeeded:true:-',
	'... and the job that was done is recorded as it ended');

# --- DROP DATABASE of a served database -----------------------------------

ok(wait_for_cycle(0, 'dropme'), 'the worker serves database dropme');
$t0 = time;
$node->safe_psql('postgres', 'DROP DATABASE dropme');
$elapsed = time - $t0;
cmp_ok($elapsed, '<', $slack, "DROP DATABASE of the worker's database succeeds promptly (${elapsed}s)");

# a drop that comes during a job: the worker leaves after that job
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', q{
CREATE EXTENSION cdp_traits;
INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(2)::text');
});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'dropme'
	    AND backend_type = 'cdp_traits worker' AND query LIKE '%refresh_context%'")
  or die 'no job worker in dropme';
$t0 = time;
$node->safe_psql('postgres', 'DROP DATABASE dropme');
$elapsed = time - $t0;
cmp_ok($elapsed, '<', 2 + $slack, "DROP DATABASE during a job succeeds when the job ends (${elapsed}s)");
ok($node->log_contains(qr/leaving database "dropme" before the end of the cycle/),
	'... the worker left before its next job');

# a job longer than DROP DATABASE waits: WITH (FORCE) terminates the worker
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', q{
CREATE EXTENSION cdp_traits;
INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(60)::text');
});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'dropme'
	    AND backend_type = 'cdp_traits worker' AND query LIKE '%refresh_context%'")
  or die 'no job worker in dropme';
$t0 = time;
$node->safe_psql('postgres', 'DROP DATABASE dropme WITH (FORCE)');
$elapsed = time - $t0;
cmp_ok($elapsed, '<', $slack, "DROP DATABASE WITH (FORCE) during a long job succeeds promptly (${elapsed}s)");
$mark = max_run();
ok(wait_for_cycle($mark), 'jobs go on in the other databases');

# --- the launcher comes back ----------------------------------------------

$launcher = launcher_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'cdp_traits launcher' AND pid <> $launcher"),
	'after pg_terminate_backend the worker comes back');
$mark = max_run();
ok(wait_for_cycle($mark), '... and runs the jobs');

# kill -9 of a job worker in the middle of a job: the server reinitializes
$node->safe_psql('postgres',
	q{INSERT INTO cdp_traits.context (key, query) VALUES ('slow', 'SELECT pg_catalog.pg_sleep(5)::text')});
$pid = job_worker_in('refresh_context');
$node->safe_psql('postgres', "DELETE FROM cdp_traits.context WHERE key = 'slow'");
ok(kill9_and_wait($pid), 'after kill -9 of a job worker the server is back');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM cdp_traits.job_runs
		  WHERE pid = $pid AND job = 'refresh_context' AND status = 'failed'"),
	'... and the job cut short is marked failed');

$launcher = launcher_pid();
ok(kill9_and_wait($launcher), 'after kill -9 of the worker the server is back');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'cdp_traits launcher' AND pid <> $launcher"),
	'... and so is the worker');
$mark = max_run();
ok(wait_for_cycle($mark), '... running the jobs');

# --- server restart -------------------------------------------------------

$node->restart;
$mark = max_run();
$node->safe_psql('postgres',
	q{INSERT INTO events VALUES (5, 'web', 'view', '1', now(), '{"email": "dee@x"}')});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM cdp_traits.pivoted_customer_attributes WHERE email = 'dee\@x'"),
	'after a server restart the worker calculates new events');
ok(wait_for_cycle($mark), '... and records its jobs');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM cdp_traits.job_runs WHERE status = 'running' AND id <= $mark"),
	'0', 'no run is left running');

$node->stop;
done_testing();
