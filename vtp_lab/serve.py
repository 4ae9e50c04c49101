"""The HTTP API: live collection, queries, reports and real-time metrics (``vtp-lab serve``).

One process owns the store's single writer and serves both the players that post
events and the dashboards that read statistics. Every route is under ``/v1`` (plus
``/healthz``); every error is JSON, ``{"error": code, "message": what and how to fix
it}``. The OpenAPI document is served at ``/openapi.json`` and committed as
``docs/openapi.json``.

Posted events go through the Lab's :class:`~vtp_lab.collect.Collector`: documents that
arrive while the store is busy are validated and stored together (group commit), and a
request is answered only once its events are stored, so an acknowledged event survives
SIGTERM and SIGKILL alike; what SIGKILL can lose is what was not yet acknowledged.

Needs the ``serve`` extra (FastAPI, uvicorn): ``pip install "vtp-lab[serve]"``.

Example:
    >>> from vtp_lab.lab import Lab
    >>> app = create_app(Lab(":memory:"), token="s3cret")
    >>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))[:2]
    ['/v1/courses/{id}/statistics', '/v1/events']
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import io
import json
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final, Literal

import polars as pl

from vtp_lab.errors import EventValidationError, InputFormatError, NotFoundError, VtpLabError
from vtp_lab.lab import Lab
from vtp_lab.reports import ReportKind

try:
    import uvicorn
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError('the HTTP API needs its extra: pip install "vtp-lab[serve]"') from exc

__all__ = ["DEFAULT_LINGER", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "ApiError", "create_app", "serve"]

DEFAULT_PORT: Final = 8750
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""The largest body (after gzip) ``POST /v1/events`` takes: 8 MiB, some 20,000 events."""
DEFAULT_LINGER: Final = 0.005
"""Seconds a group of posted documents waits for more before it is stored (see :class:`~vtp_lab.collect.Collector`)."""

_NDJSON_TYPES: Final = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines")
_ARROW: Final = "application/vnd.apache.arrow.stream"
_PARQUET: Final = "application/vnd.apache.parquet"
_FRAME_CONTENT: Final = {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    _ARROW: {"schema": {"type": "string", "format": "binary"}},
    _PARQUET: {"schema": {"type": "string", "format": "binary"}},
}
_EVENTS_BODY: Final = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


class ApiError(Exception):
    """An error answered as ``{"error": code, "message": message}`` with ``status``.

    Example:
        >>> ApiError(413, "body_too_large", "too big").status
        413
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Rejection(BaseModel):
    """One rejected row of a posted document: its 0-based index, reason code and field."""

    index: int
    reason: str
    field: str | None


class Acknowledgement(BaseModel):
    """The answer to ``POST /v1/events``: every row is accepted (stored), a duplicate, or rejected."""

    request_id: str
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[Rejection]


class ErrorBody(BaseModel):
    """Every error: a code and a message that names the value and the fix."""

    error: str
    message: str


class RecordingNow(BaseModel):
    """One recording in ``GET /v1/realtime``."""

    recording_id: str
    active_viewers: int
    events_per_second: float
    rebuffer_ratio: float | None


class RealtimeBody(BaseModel):
    """``GET /v1/realtime``: what is happening now (see :func:`vtp_lab.metrics.realtime`)."""

    as_of: str
    active_minutes: float
    events_per_second: float
    rebuffer_ratio: float | None
    recordings: list[RecordingNow]


def _check_settings(max_body_bytes: int, linger: float) -> None:
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes={max_body_bytes}: give a positive number of bytes")
    if not 0 <= linger <= 1:
        raise ValueError(f"linger={linger}: give 0 to 1 second")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _status_of(exc: VtpLabError) -> tuple[int, str]:
    if isinstance(exc, EventValidationError):
        return 400, exc.reason
    if isinstance(exc, InputFormatError):
        return 400, "bad_input"
    return 503, "store_unavailable"


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        return _error(422, "invalid_request", f"{problems}; see /docs for what each parameter takes")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        hint = "; the routes are listed at /docs" if exc.status_code in (404, 405) else ""
        return _error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}{hint}")

    @app.exception_handler(VtpLabError)
    async def lab_error(request: Request, exc: VtpLabError) -> JSONResponse:
        status, code = _status_of(exc)
        return _error(status, code, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes before and after gzip, or an :class:`ApiError`."""
    declared = request.headers.get("content-length", "")
    fix = f"the limit is {limit:,} bytes (vtp-lab serve --max-body); send fewer events per request"
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is {int(declared):,} bytes; {fix}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is over {limit:,} bytes; {fix}")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: send gzip or no encoding")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflate.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_gzip", f"the gzip body does not decompress ({exc}); compress it with gzip") from None
    if len(plain) > limit:
        raise ApiError(413, "body_too_large", f"the body is over {limit:,} bytes once decompressed; {fix}")
    if not inflate.eof:
        raise ApiError(400, "bad_gzip", "the gzip body is cut short; send the whole stream")
    return plain


def _frame_response(frame: pl.DataFrame, accept: str) -> Response:
    """A frame as JSON rows, or as Arrow IPC or Parquet when the Accept header asks for it."""
    if _ARROW in accept:
        buffer = io.BytesIO()
        frame.write_ipc_stream(buffer)
        return Response(buffer.getvalue(), media_type=_ARROW)
    if _PARQUET in accept or "application/parquet" in accept:
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return Response(buffer.getvalue(), media_type=_PARQUET)
    return Response(frame.write_json(), media_type="application/json")


def _frame_route(query: Callable[[str], pl.DataFrame | pl.LazyFrame]) -> Callable[..., Response]:
    """A GET route answering ``query(id)``, the id checked as a UUID first."""

    def route(id: uuid.UUID, request: Request) -> Response:
        frame = query(str(id))
        eager = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return _frame_response(eager, request.headers.get("accept", ""))

    return route


def _bearer(token: str | None) -> Callable[..., Any]:
    scheme = HTTPBearer(auto_error=False, description="the server's --token or $VTP_LAB_TOKEN, when one is set")

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        if not token:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            what = "a wrong bearer token" if given else "no bearer token"
            raise ApiError(401, "unauthorized", f"{what}: send Authorization: Bearer <the server's --token>")

    return check


def create_app(
    lab: Lab,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cors_origins: Sequence[str] = (),
    linger: float = DEFAULT_LINGER,
) -> FastAPI:
    """The ASGI app over ``lab``: it owns the Lab's collector from startup to shutdown (which flushes).

    Example:
        >>> spec = create_app(Lab(":memory:")).openapi()
        >>> spec["paths"]["/v1/users/{id}/engagement"]["get"]["parameters"][0]["schema"]["format"]
        'uuid'
    """
    _check_settings(max_body_bytes, linger)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = lab.collector(batch_size=10_000, flush_interval=1.0, max_pending=64, linger=linger)
        app.state.collector = collector
        try:
            yield
        finally:
            await run_in_threadpool(collector.close)

    app = FastAPI(
        title="vtp_lab",
        version="1",
        summary="Playback events in; sessions, statistics, reports and real-time metrics out.",
        lifespan=lifespan,
        docs_url=None,  # served by _offline_docs, not from a CDN
        redoc_url=None,
    )
    _offline_docs(app)
    _install_errors(app)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
        )
    _collection_routes(app, lab, token=token, max_body_bytes=max_body_bytes)
    _query_routes(app, lab)
    return app


_DOCS_ASSETS: Final = "/docs/assets"
"""Where ``/docs`` finds Swagger UI's script and style: those fastapi-offline installs (Swagger UI 5), not a CDN."""


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json``, with every asset served here, so it works offline."""
    assets = importlib.resources.files("fastapi_offline") / "static"
    app.mount(_DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="vtp_lab API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
        )


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 422, 503)
}
"""The error answers a route documents."""

_FRAMES: Final[dict[int | str, dict[str, Any]]] = {200: {"content": _FRAME_CONTENT}, 422: {"model": ErrorBody}}
"""The answers of a route that returns a frame."""


def _collection_routes(app: FastAPI, lab: Lab, *, token: str | None, max_body_bytes: int) -> None:
    """``/healthz`` and ``POST /v1/events``: events in through the app's collector."""

    @app.get("/healthz", summary="Is the server up, and what store does it hold")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "store": lab.path, "events": lab.store.count("analytics_events")}

    @app.post(
        "/v1/events",
        summary="Post events: a JSON array, or NDJSON (Content-Type application/x-ndjson); gzip accepted",
        response_model=Acknowledgement,
        responses=_ERRORS,
        openapi_extra={"requestBody": _EVENTS_BODY},
        dependencies=[Depends(_bearer(token))],
    )
    async def post_events(request: Request) -> Acknowledgement:
        return await _acknowledge(request, max_body_bytes)


async def _acknowledge(request: Request, max_body_bytes: int) -> Acknowledgement:
    """Hand a posted body to the app's collector and answer with what became of each event."""
    body = await _read_body(request, max_body_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_encoding", f"the body is not UTF-8 (byte {exc.start}); send UTF-8 text") from None
    ndjson = request.headers.get("content-type", "").split(";")[0].strip().lower() in _NDJSON_TYPES
    request_id = str(uuid.uuid4())
    collector = request.app.state.collector
    future = await run_in_threadpool(collector.submit, text, ndjson=ndjson, source=f"http:{request_id}")
    try:
        receipt = await asyncio.wrap_future(future)
    except InputFormatError as exc:
        hint = "send a JSON array of event objects, or NDJSON with Content-Type application/x-ndjson"
        raise ApiError(400, "malformed_json", f"{exc}; {hint}") from None
    rejections = [
        Rejection(index=row["row_number"] - 1, reason=row["reason"], field=row["field"])
        for row in receipt.rejected.to_dicts()
    ]
    return Acknowledgement(
        request_id=request_id,
        accepted=receipt.accepted,
        duplicates=receipt.duplicates,
        rejected=len(rejections),
        rejections=rejections,
    )


def _query_routes(app: FastAPI, lab: Lab) -> None:
    """Frames, reports and real-time metrics out."""
    queries: list[tuple[str, str, Callable[[str], pl.DataFrame | pl.LazyFrame]]] = [
        (
            "/v1/recordings/{id}/sessions",
            "Playback sessions of a recording",
            lambda id: lab.playback_sessions(recording_id=id),
        ),
        (
            "/v1/users/{id}/engagement",
            "Engagement metrics of a user, per recording",
            lambda id: lab.engagement_metrics(user_id=id),
        ),
        (
            "/v1/recordings/{id}/statistics",
            "Statistics of a recording",
            lambda id: lab.lecture_statistics(recording_id=id),
        ),
        ("/v1/courses/{id}/statistics", "Statistics of a course", lambda id: lab.course_statistics(course_id=id)),
    ]
    for path, summary, query in queries:
        app.get(path, summary=summary, responses=_FRAMES)(_frame_route(query))

    @app.get(
        "/v1/reports/{kind}",
        summary="One of the six reports: JSON, or the standalone HTML with Accept: text/html",
        responses={200: {"content": {"application/json": {}, "text/html": {}}}, **_ERRORS},
    )
    def report(
        kind: ReportKind,
        request: Request,
        course_id: uuid.UUID | None = None,
        user_id: uuid.UUID | None = None,
        recording_id: uuid.UUID | None = None,
    ) -> Response:
        if kind == "student" and user_id is None:
            raise ApiError(400, "missing_user_id", "the student report needs ?user_id=<a user's UUID>")
        try:
            built = lab.report(
                kind, course_id=_text(course_id), user_id=_text(user_id), recording_id=_text(recording_id)
            )
        except NotFoundError as exc:  # nothing in the store for this scope
            raise ApiError(404, "not_found", str(exc)) from None
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(built.to_html())
        return JSONResponse(built.to_dict())

    @app.get("/v1/realtime", summary="Active viewers per recording, events per second, rebuffer ratio (5 min)")
    def realtime(
        minutes: Annotated[float, Query(gt=0, le=1440, description="the activity window, in minutes")] = 5.0,
    ) -> RealtimeBody:
        now = lab.realtime(active_minutes=minutes)
        return RealtimeBody(
            as_of=now.as_of.isoformat(),
            active_minutes=now.active_minutes,
            events_per_second=now.events_per_second,
            rebuffer_ratio=now.rebuffer_ratio,
            recordings=[RecordingNow(**row) for row in now.recordings.to_dicts()],
        )


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def serve(
    store: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cors_origins: Sequence[str] = (),
    linger: float = DEFAULT_LINGER,
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info",
) -> None:
    """Open the store and serve it until SIGINT or SIGTERM; shutdown stores everything acknowledged.

    ``token`` defaults to ``$VTP_LAB_TOKEN``; without one, writes need no token.

    Example:
        >>> serve("lab.duckdb", port=0, max_body_bytes=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: max_body_bytes=0: give a positive number of bytes
    """
    _check_settings(max_body_bytes, linger)  # before the store is opened
    with Lab(store) as lab:
        app = create_app(
            lab,
            token=token or os.environ.get("VTP_LAB_TOKEN"),
            max_body_bytes=max_body_bytes,
            cors_origins=cors_origins,
            linger=linger,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


if __name__ == "__main__":  # python -m vtp_lab.serve > docs/openapi.json
    print(json.dumps(create_app(Lab(":memory:")).openapi(), indent=2))
