"""The ingest benchmark's baseline: a functions-framework HTTP function that only parses JSON.

`herald bench` starts it exactly like the ingest function (functions-framework without --debug,
so gunicorn with the same WORKERS/THREADS) and drives it with the same requests; the ratio
ingest / trivial says how much of the framework's ceiling the real handler keeps.

    functions-framework --target=trivial --source=bench/trivial_function.py --port=8081
"""

from __future__ import annotations

import json

import flask
import functions_framework

ACCEPTED = json.dumps({"status": "accepted"})


@functions_framework.http
def trivial(request: flask.Request) -> flask.Response:
    """Parse the body as JSON and answer 202; 400 if it is not JSON. Nothing else."""
    try:
        json.loads(request.get_data(cache=False))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return flask.Response('{"error":"not json"}', status=400, mimetype="application/json")
    return flask.Response(ACCEPTED, status=202, mimetype="application/json")
