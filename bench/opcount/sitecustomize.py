"""Put first on a process's PYTHONPATH by `herald bench`: counts the process's Google Cloud
operations (herald/bench/opcount.py) when HERALD_BENCH_OPCOUNT is set."""

from herald.bench import opcount

opcount.install()
