"""Print the tests that pass untracked and fail only when tracked, from two JUnit XML reports.

    python compat/compare_junit.py untracked.xml tracked.xml [--allow compat/allowlist.txt]
        [--root SUITE_DIR --ids-out FILE]

Exit status 1 when any such test is not on the allow-list (tests that inspect a framework's internals,
each listed with its reason). With ``--ids-out`` the unlisted ones are written as pytest node ids (resolved
against the suite's directory), for ``run_peer_suites.sh`` to run again one at a time: on two busy cores a
framework's 5-second test timeouts can fire under load alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        out[name] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
    return out


def node_id(test: str, root: str) -> str:
    """``tests.server.test_x.TestY::test_z[p]`` -> ``tests/server/test_x.py::TestY::test_z[p]``: the longest
    dotted prefix of the class name that is a file under ``root`` is the module."""
    classname, _, name = test.partition("::")
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if os.path.isfile(os.path.join(root, path)):
            return "::".join([path, *parts[cut:], name])
    return test


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("untracked")
    parser.add_argument("tracked")
    parser.add_argument("--allow", default=None)
    parser.add_argument("--root", default=".")
    parser.add_argument("--ids-out", default=None)
    args = parser.parse_args()
    allowed: dict[str, str] = {}
    if args.allow:
        with open(args.allow, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    test, _, reason = line.partition(" ")
                    allowed[test] = reason.strip()
    base, tracked = outcomes(args.untracked), outcomes(args.tracked)
    only = sorted(t for t, o in tracked.items() if o == "failed" and base.get(t) == "passed")
    listed = [t for t in only if any(t.endswith(a) or a in t for a in allowed)]
    unlisted = [t for t in only if t not in listed]
    print(f"{len(base)} tests untracked, {len(tracked)} tracked; {len(only)} fail only when tracked "
          f"({len(listed)} allow-listed artefacts)")
    for t in listed:
        reason = next(r for a, r in allowed.items() if t.endswith(a) or a in t)
        print(f"  artefact: {t}  ({reason})")
    for t in unlisted:
        print(f"  FAILS ONLY TRACKED: {t}")
    if args.ids_out:
        with open(args.ids_out, "w", encoding="utf-8") as f:
            f.writelines(node_id(t, args.root) + "\n" for t in unlisted)
    return 1 if unlisted else 0


if __name__ == "__main__":
    sys.exit(main())
