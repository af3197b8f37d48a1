#!/usr/bin/env python3
"""Reads `cargo bench` (criterion) output on stdin; prints markdown rows: name | median."""
import re
import sys

name = None
for line in sys.stdin:
    line = line.rstrip()
    if "time:" in line:
        m = re.search(r"time:\s*\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        label = name or line.split("time:")[0].strip()
        if m:
            print(f"| {label} | {m.group(1)} |")
        name = None
    elif line and not line.startswith(" ") and not line.startswith("Benchmarking"):
        name = line.strip()
