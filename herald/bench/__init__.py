"""`herald bench`: throughput, latency, batching and memory figures on a private local stack.

Modules: `stats` (percentiles, backlog slope), `load` (open- and closed-loop HTTP generators),
`ingest`, `pipeline`, `bulk`, `memory` (the measurements), `report` (bars, JSON, Markdown) and
`runner` (brings a stack up, runs every part within a hard time limit, always brings it down).
See bench/README.md for what each figure means.
"""
