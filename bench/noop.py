"""The framework's floor for the record benchmark: a Starlette app under uvicorn whose one route
reads the body, decodes it with msgspec and answers the record path's JSON, storing nothing.

`python -m bench.noop PORT`. Whatever our record path costs beyond this is ours (validation,
keys, metrics, access log, the commit); this much any Starlette service on the machine pays.
"""

from __future__ import annotations

import sys

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = b'{"success":true,"accepted":1}'


async def record(request: Request) -> Response:
    msgspec.json.decode(await request.body())
    return Response(ANSWER, media_type="application/json")


app = Starlette(routes=[Route("/api/v1/analytics/metrics/record", record, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
