"""Copied into every generated project, ours included: a query and CPU counter and a "who am I" view.

Both are the same code for every system measured, so what they cost and how they count is the
same for all. The query counter is off unless a request asks for it (``X-Bench-Count-Queries: 1``),
so the timed sign-ins run the unmodified middleware stack plus one header lookup and two reads of
the process's CPU clock (``X-Bench-CPU-us`` in the response).
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _Counter:
    def __init__(self) -> None:
        self.total = 0
        self.writes = 0

    def __call__(self, execute, sql, params, many, context):
        self.total += 1
        if str(sql).lstrip().upper().startswith(WRITES):
            self.writes += 1
        return execute(sql, params, many, context)


class QueryCountMiddleware:
    """Outermost middleware: counts every SQL statement of a request, session save included."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.process_time()
        if request.headers.get("X-Bench-Count-Queries") != "1":
            response = self.get_response(request)
        else:
            counter = _Counter()
            with ExitStack() as stack:
                for connection in connections.all():
                    stack.enter_context(connection.execute_wrapper(counter))
                response = self.get_response(request)
            response["X-Bench-Queries"] = str(counter.total)
            response["X-Bench-Writes"] = str(counter.writes)
        # CPU time of this worker for the request: what waiting for the CPU or the provider does not inflate.
        response["X-Bench-CPU-us"] = str(round((time.process_time() - started) * 1e6))
        return response


def whoami(request: HttpRequest) -> JsonResponse:
    """Who the session is signed in as: the same check of a finished sign-in for every system."""
    user = request.user
    if not user.is_authenticated:
        return JsonResponse({"authenticated": False, "email": None})
    return JsonResponse({"authenticated": True, "email": user.email, "username": user.get_username()})
