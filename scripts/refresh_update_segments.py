#!/usr/bin/env python3
"""Rewrite the segments part of cdp_traits--0.1.0--0.2.0.sql from src/sql/60_segments.sql.

The 0.1.0 -> 0.2.0 update creates the segment objects exactly as a fresh 0.2.0
install does (the test "upgrade" compares both catalogs), so after a change of
60_segments.sql run this script (from the repository root) and re-run the tests.
"""
import os

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
upd = os.path.join(root, 'cdp_traits--0.1.0--0.2.0.sql')
d = open(upd).read()
head = "\n-- Segments and toggles (SPEC section 6), new in 0.2.0: as in 60_segments.sql.\n"
tail = "-- The attribute engine writes audience enter/exit to the toggle log.\n"
start, end = d.index(head), d.index(tail)
seg = open(os.path.join(root, 'src', 'sql', '60_segments.sql')).read()
view = seg.index("CREATE VIEW cdp_traits.audience_changes AS")
cut = seg.rfind("\n\n", 0, view) + 2
middle = head + seg[:cut] + """
-- 0.1.0 kept audience enter/exit in a table of its own: its rows move to the
-- toggle log (vendor 0), and audience_changes becomes a view on it.
INSERT INTO cdp_traits.segment_toggles (vendor, segment, user_id, member, event_time, recorded_at)
SELECT 0, a.audience_id, a.customer_entity_id::text, a.entered, a.changed_at, a.changed_at
  FROM cdp_traits.audience_changes a ORDER BY a.seq;
-- (leaving the extension first takes them off pg_dump's list)
ALTER EXTENSION cdp_traits DROP SEQUENCE cdp_traits.audience_changes_seq_seq;
ALTER EXTENSION cdp_traits DROP TABLE cdp_traits.audience_changes;
DROP TABLE cdp_traits.audience_changes;

""" + seg[cut:] + "\n"
open(upd, 'w').write(d[:start] + middle + d[end:])
