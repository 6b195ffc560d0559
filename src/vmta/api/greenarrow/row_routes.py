"""Reading and updating one row of a record's array on its own:
``GET``/``PUT .../{record_id}/rules/{row_id}``, the "Update Throttling Rule" operation
GreenArrow's pages name for the rules of templates (and, the same way, of IP addresses).

The body is ``{"throttling_rule": {...}}`` with only the fields to change (as on PUT:
a nested hash merges, an array replaces); the response is the whole row. The change is
made as a PUT of the record whose array carries the changed row under its own id, so
every rule of the record applies and messages name the row as ``rules[2].domains``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import JsonObject, merge_patch, parse_record_id
from vmta.api.openapi import envelope_responses, request_body
from vmta.domain.errors import NotFound

ROW_KEY = "throttling_rule"

# Both get an open store connection (a write one for Apply).
Read = Callable[[Any, int], JsonObject]  # the record as GET renders it
Apply = Callable[[Any, int, JsonObject], JsonObject]  # a PUT; the record after it


def add_row_routes(
    api: APIRouter,
    *,
    path: str,
    array: str,
    label: str,
    read: Read,
    apply: Apply,
    schema: Any = None,
) -> None:
    row_path = f"{path}/{{record_id}}/{array}/{{row_id}}"

    def _index(record: JsonObject, row_id: int, rid: int) -> int:
        for i, row in enumerate(record.get(array) or []):
            if row.get("id") == row_id:
                return i
        raise NotFound(f"No rule with id {row_id} in {label} {rid}.")

    @api.get(
        row_path,
        summary=f"Get one throttling rule of {label}",
        responses=envelope_responses(ROW_KEY, schema=schema),
    )
    async def get_row(record_id: str, row_id: str, request: Request) -> JSONResponse:
        rid, wanted = parse_record_id(record_id), parse_record_id(row_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                record = read(conn, rid)
                return {ROW_KEY: record[array][_index(record, wanted, rid)]}

        return success(await run_in_threadpool(work))

    @api.put(
        row_path,
        summary=f"Update one throttling rule of {label} (only the fields given)",
        openapi_extra=request_body(ROW_KEY, None),
        responses=envelope_responses(ROW_KEY, schema=schema),
    )
    async def put_row(record_id: str, row_id: str, request: Request) -> JSONResponse:
        rid, wanted = parse_record_id(record_id), parse_record_id(row_id)
        patch = {k: v for k, v in read_wrapped(await request.body(), ROW_KEY).items() if k != "id"}
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                record = read(conn, rid)
                rows = list(record[array])
                index = _index(record, wanted, rid)
                # A reference is replaced whole, as on the record itself.
                rows[index] = merge_patch(rows[index], patch, ("throttle_program",))
                updated = apply(conn, rid, {array: rows})
                return {ROW_KEY: updated[array][index]}

        return success(await run_in_threadpool(work))
