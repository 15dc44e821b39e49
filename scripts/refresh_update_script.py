#!/usr/bin/env python3
"""Regenerate the derived parts of cdp_traits--0.1.0--0.2.0.sql from src/sql.

The 0.1.0 -> 0.2.0 update must leave a database exactly as a fresh 0.2.0
install (the regression test "upgrade" compares both catalogs).  Two parts of
the update script are therefore not written by hand but derived here:

  * the files new in 0.2.0 (NEW_FILES), verbatim;

  * the segment objects, as in src/sql/60_segments.sql, with the move of
    0.1.0's audience log into the toggle log before audience_changes becomes
    a view;
  * every function that exists in the frozen cdp_traits--0.1.0.sql and whose
    definition in src/sql differs: CREATE OR REPLACE with the new text;
    every SQL/PL/pgSQL function new in a file that 0.1.0 had: CREATE;
  * the privileges of every function and aggregate new in 0.2.0 (outside
    60_segments.sql, whose objects the update script grants with its
    tables), as 90_privileges.sql classifies it.  (C functions and
    aggregates new in files that 0.1.0 had are created by hand in the update
    script, before the generated part.)

Run it from anywhere after changing src/sql, then run the tests.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPDATE = os.path.join(ROOT, 'cdp_traits--0.1.0--0.2.0.sql')
FROZEN = os.path.join(ROOT, 'cdp_traits--0.1.0.sql')
SQL_DIR = os.path.join(ROOT, 'src', 'sql')

NEW_FILES = ['15_explain.sql', '60_meiro.sql', '85_health.sql']
SEG_BEGIN = "\n-- Segments and toggles (SPEC section 6), new in 0.2.0: as in 60_segments.sql.\n"
SEG_END = "-- BEGIN generated: functions changed since 0.1.0\n"
FUN_END = "-- END generated: functions changed since 0.1.0\n"

HEADER = re.compile(r'^CREATE FUNCTION (cdp_traits\.\w+)\(', re.M)
ROUTINE = re.compile(r'^CREATE (?:FUNCTION|AGGREGATE) cdp_traits\.(\w+)\(', re.M)


def functions(text):
    """name(args) -> full text, for every function whose body is AS $$ ... $$;"""
    out = {}
    for m in HEADER.finditer(text):
        body = text.find('\nAS $$\n', m.start())
        nxt = text.find('\nCREATE ', m.start() + 1)
        if body < 0 or (0 <= nxt < body):
            continue                # a C function, or no $$ body of its own
        end = text.index('\n$$;\n', body) + len('\n$$;\n')
        sig = text[m.end():text.index('\n', m.start())]
        out[m.group(1) + '(' + sig] = text[m.start() + 0:end].lstrip('\n')
    return out


def segments_part():
    seg = open(os.path.join(SQL_DIR, '60_segments.sql')).read()
    view = seg.index("CREATE VIEW cdp_traits.audience_changes AS")
    cut = seg.rfind("\n\n", 0, view) + 2
    return SEG_BEGIN + seg[:cut] + """
-- 0.1.0 kept audience enter/exit in a table of its own: its rows move to the
-- toggle log (vendor 0), and audience_changes becomes a view on it.  They
-- keep their numbers, and the log numbers on from 0.1.0's last one: a
-- reader's last seq stays valid (renumbered without 0.1.0's gaps, the next
-- changes would take numbers it had passed, and it would skip them).
INSERT INTO cdp_traits.segment_toggles (seq, vendor, segment, user_id, member, event_time, recorded_at)
OVERRIDING SYSTEM VALUE
SELECT a.seq, 0, a.audience_id, a.customer_entity_id::text, a.entered, a.changed_at, a.changed_at
  FROM cdp_traits.audience_changes a ORDER BY a.seq;
SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence('cdp_traits.segment_toggles', 'seq'),
                         GREATEST(s.last_value, (SELECT pg_catalog.max(a.seq) FROM cdp_traits.audience_changes a)),
                         s.is_called OR EXISTS (SELECT FROM cdp_traits.audience_changes))
  FROM cdp_traits.audience_changes_seq_seq s;
-- (leaving the extension first takes them off pg_dump's list)
ALTER EXTENSION cdp_traits DROP SEQUENCE cdp_traits.audience_changes_seq_seq;
ALTER EXTENSION cdp_traits DROP TABLE cdp_traits.audience_changes;
DROP TABLE cdp_traits.audience_changes;

""" + seg[cut:] + "\n"


def changed_functions_part():
    old = functions(open(FROZEN).read())
    new = {}
    for name in sorted(os.listdir(SQL_DIR)):
        if name.endswith('.sql'):
            new.update(functions(open(os.path.join(SQL_DIR, name)).read()))
    covered = {}
    for name in NEW_FILES + ['60_segments.sql']:
        covered.update(functions(open(os.path.join(SQL_DIR, name)).read()))
    classes = dict(re.findall(r"\('(\w+)', '(public|reader|admin|owner)'\)",
                              open(os.path.join(SQL_DIR, '90_privileges.sql')).read()))
    out = [SEG_END]
    for key in sorted(new):
        if key in old and old[key] != new[key]:
            out.append(new[key].replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION', 1) + '\n')
        elif key not in old and key not in covered:
            # new in 0.2.0 in a file that 0.1.0 had: created
            out.append(new[key] + '\n')
    # every routine new in 0.2.0 (but the segments'): granted as
    # 90_privileges.sql classifies it
    old_names = set(ROUTINE.findall(open(FROZEN).read()))
    added = sorted({n for name in os.listdir(SQL_DIR)
                    if name.endswith('.sql') and name != '60_segments.sql'
                    for n in ROUTINE.findall(open(os.path.join(SQL_DIR, name)).read())}
                   - old_names)
    if added:
        out.append('DO $added_grants$\nDECLARE\n\tf regprocedure;\n\tr record;\nBEGIN\n'
                   '\tFOR r IN SELECT * FROM (VALUES\n\t\t'
                   + ',\n\t\t'.join("('%s', '%s')" % (n, classes.get(n, 'owner')) for n in added)
                   + '\n\t) v(name, class) LOOP\n'
                   '\t\tFOR f IN SELECT p.oid FROM pg_catalog.pg_proc p\n'
                   "\t\t\t\t  WHERE p.pronamespace = 'cdp_traits'::regnamespace AND p.proname = r.name LOOP\n"
                   "\t\t\tEXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);\n"
                   "\t\t\tIF r.class IN ('public', 'reader', 'admin') THEN\n"
                   "\t\t\t\tEXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %s', f,\n"
                   "\t\t\t\t\tCASE r.class WHEN 'public' THEN 'PUBLIC' WHEN 'reader' THEN 'cdp_traits_reader'\n"
                   "\t\t\t\t\t\tELSE 'cdp_traits_admin' END);\n"
                   '\t\t\tEND IF;\n\t\tEND LOOP;\n\tEND LOOP;\nEND;\n$added_grants$;\n\n')
    return ''.join(out) + FUN_END


def main():
    d = open(UPDATE).read()
    for name in NEW_FILES:
        begin = '-- BEGIN generated: src/sql/%s\n' % name
        end = '-- END generated: src/sql/%s' % name
        i, j = d.index(begin) + len(begin), d.index(end)
        d = d[:i] + open(os.path.join(SQL_DIR, name)).read().strip() + '\n' + d[j:]
    start = d.index(SEG_BEGIN)
    end = d.index(FUN_END) + len(FUN_END)
    open(UPDATE, 'w').write(d[:start] + segments_part() + changed_functions_part() + d[end:])


if __name__ == '__main__':
    main()
