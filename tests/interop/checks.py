"""The interop scripts' checks: each prints ok or FAIL, and finish() exits
non-zero if any failed."""

import sys

counts = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        counts["passed"] += 1
        print(f"ok   {name}")
    else:
        counts["failed"] += 1
        print(f"FAIL {name} {detail}")


def finish(label):
    print(f"{label}: {counts['passed']} passed, {counts['failed']} failed")
    sys.exit(1 if counts["failed"] else 0)
