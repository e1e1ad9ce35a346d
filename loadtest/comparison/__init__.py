"""The parts of `make compare` (loadtest/compare.py runs them).

variants    the one table of variants (also read by the Makefile and the e2e tests)
settings    what to run, from the environment
stack       one variant's compose project: up, down, compose commands
sampler     every container's CPU and memory, from its cgroup
generators  Locust and wrk runs, and their numbers
measure     one scenario on one variant: a row of the results
progress    what is running and how long is left
report      results.json/csv, the charts, report.md

Nothing is imported here, so the table loads without the rest. `scenarios` (the
workloads, shared with the Locust image) is a sibling module of this package in loadtest/.
"""
