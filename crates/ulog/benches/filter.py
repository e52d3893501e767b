#!/usr/bin/env python3
"""The benchmark's filter in Python (standard library only), as admins script it today:

    subsystem == "com.apple.SoftwareUpdateMacController" AND eventMessage CONTAINS[c] "ota"

Usage: filter.py LOG.ndjson [json|prefilter]
  json       parse every line with json.loads (the usual script)
  prefilter  skip lines without the subsystem bytes before json.loads (same trick as Rust)
Prints the match count and this process's peak RSS.
"""
import json
import resource
import sys

SUBSYSTEM = "com.apple.SoftwareUpdateMacController"
NEEDLE = SUBSYSTEM.encode()


def main() -> None:
    path = sys.argv[1]
    prefilter = len(sys.argv) > 2 and sys.argv[2] == "prefilter"
    matched = 0
    entries = 0
    out = open("/dev/null", "wb")
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line.startswith(b"{"):
                continue
            entries += 1
            if prefilter and NEEDLE not in line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("subsystem") == SUBSYSTEM and "ota" in (e.get("eventMessage") or "").lower():
                matched += 1
                out.write(line)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"matched {matched}, entries {entries}, maxrss {rss_kb} kB")


if __name__ == "__main__":
    main()
