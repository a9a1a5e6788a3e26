"""A web app that hands work to task workers and answers at once (docs/workers.md).

    asyncflow worker tasks --broker sqlite:///jobs.db      # terminal 1 (the worker)
    python webapp.py --broker sqlite:///jobs.db            # terminal 2 (the app)
    curl -X POST localhost:8000/reports/7                  # -> {"run_id": "..."}
    curl localhost:8000/runs/<run_id>                      # -> state, then the result

POST starts a run with `.delay()` and returns its run id; GET rebuilds the run's
future from the id (in whichever process serves the request) and reports its state,
and its result once it has one. Only the standard library: `http.server`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tasks

from asyncflow import task_worker


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        match = re.fullmatch(r"/reports/(\d+)", self.path)
        if match is None:
            return self.reply(404, {"error": "POST /reports/<user id>"})
        future = tasks.report.delay(int(match[1]))  # returns at once
        self.reply(202, {"run_id": task_worker.run_id(future)})

    def do_GET(self) -> None:
        match = re.fullmatch(r"/runs/(\w+)", self.path)
        if match is None:
            return self.reply(404, {"error": "GET /runs/<run id>"})
        try:
            future = task_worker.future(match[1])
        except ValueError as exc:
            return self.reply(404, {"error": str(exc)})
        future.wait(timeout=0.5)  # a short long-poll; the run goes on either way
        body: dict[str, Any] = {"state": future.state.name}
        if future.state.is_completed():
            body["result"] = future.result()
        elif future.done():
            body["error"] = repr(future.exception())
        self.reply(200, body)

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default="sqlite:///jobs.db")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    os.environ["ASYNCFLOW_BROKER_URL"] = args.broker  # where .delay() sends runs
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"serving on http://127.0.0.1:{args.port} (broker {args.broker})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
