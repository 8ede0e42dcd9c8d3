"""The Starlette app: SGLang's HTTP surface (contract §2) over the simulated engine."""

from __future__ import annotations

import hmac
import logging
import time
from argparse import Namespace
from typing import Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from qwentui.sim import completions, loads, metrics, protocol
from qwentui.sim.chat import chat_completions, json_response
from qwentui.sim.state import SimState

log = logging.getLogger("sglang.sim")

VERSION = "0.5.23"
EXEMPT_PREFIXES = ("/health", "/ready", "/metrics")
ADMIN_PATHS = ("/flush_cache", "/abort_request", "/release_memory_occupation", "/resume_memory_occupation",
               "/pause_generation", "/continue_generation")
NOT_FOUND = {"detail": "Not Found"}


def _state(request: Request) -> SimState:
    return request.app.state.sim


def _bearer_ok(header: str, key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class AuthMiddleware:
    """srt/utils/auth.py: Bearer only; 401 {"error":"Unauthorized"}; health/ready/metrics exempt."""

    def __init__(self, app, api_key: str | None, admin_key: str | None) -> None:
        self.app, self.api_key, self.admin_key = app, api_key, admin_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or scope["path"].startswith(EXEMPT_PREFIXES):
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        admin = scope["path"] in ADMIN_PATHS and self.admin_key
        key = self.admin_key if admin else self.api_key
        if key and not _bearer_ok(header, key):
            return await json_response({"error": "Unauthorized"}, 401)(scope, receive, send)
        return await self.app(scope, receive, send)


async def health(request: Request) -> Response:
    state = _state(request)
    if state.draining:
        log.info("Health check request received during shutdown. Returning 503.")
        return Response(status_code=503)
    if not state.up or state.unhealthy:
        return Response(status_code=503)
    ok = await state.engine.probe()
    return Response(status_code=200 if ok and not state.draining else 503)


async def ready(request: Request) -> Response:
    state = _state(request)
    ok = state.up and not state.unhealthy and not state.draining and not state.paused
    return Response(status_code=200 if ok else 503)


async def ping(request: Request) -> Response:
    state = _state(request)
    return Response(status_code=200 if state.up and not state.unhealthy and not state.draining else 503)


async def root(request: Request) -> Response:
    return json_response("SGLang is running")


def _model_card(state: SimState) -> dict:
    name = state.args.served_model_name
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "sglang", "root": name,
            "parent": None, "max_model_len": state.res.context_len}


async def models(request: Request) -> Response:
    return json_response({"object": "list", "data": [_model_card(_state(request))]})


async def model_by_name(request: Request) -> Response:
    state, name = _state(request), request.path_params["model"]
    if name != state.args.served_model_name:
        return json_response({"error": {"message": f"The model '{name}' does not exist",
                                        "type": "invalid_request_error", "param": "model",
                                        "code": "model_not_found"}}, 404)
    return json_response(_model_card(state))


async def model_info(request: Request) -> Response:
    args = _state(request).args
    if request.url.path.startswith("/get_"):
        log.warning("Endpoint '/get_model_info' is deprecated and will be removed in a future version. "
                    "Please use '/model_info' instead.")
    return json_response({
        "model_path": args.model_path, "served_model_name": args.served_model_name,
        "tokenizer_path": args.tokenizer_path, "is_generation": True,
        "preferred_sampling_params": args.preferred_sampling_params, "weight_version": "default",
        "load_format": args.load_format, "reasoning_parser": args.reasoning_parser,
        "tool_call_parser": args.tool_call_parser, "disaggregation_mode": "null",
        "has_image_understanding": False, "has_audio_understanding": False, "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"]})


async def server_info(request: Request) -> Response:
    from qwentui.sim.args import server_args_dict

    state = _state(request)
    if request.url.path.startswith("/get_"):
        log.warning("Endpoint '/get_server_info' is deprecated and will be removed in a future version. "
                    "Please use '/server_info' instead.")
    info = server_args_dict(state.args)
    info.update({
        "launch_command": state.args.launch_command, "max_total_num_tokens": state.res.max_total_tokens,
        "max_req_input_len": state.res.context_len - 5, "startup_time": state.started_at,
        "internal_states": [{"last_gen_throughput": state.engine.gen_throughput(),
                             "memory_usage": {"weight": state.res.weight_gb, "kvcache": state.res.kv_gb,
                                              "token_capacity": state.res.max_total_tokens, "graph": 0.38},
                             "effective_max_running_requests_per_dp": state.res.max_running}],
        "version": VERSION, "frontend": "python"})
    return json_response(info)


async def metrics_endpoint(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=metrics.CONTENT_TYPE)


async def flush_cache(request: Request) -> Response:
    state = _state(request)
    if state.engine.busy:
        log.warning(f"Cache not flushed because there are pending requests. "
                    f"#queue-req: {state.engine.queued}, #running-req: {state.engine.running}")
        return PlainTextResponse("Cache not flushed. Please check backend logs for more details. "
                                 "(When there are running or waiting requests, the operation will not be performed.)\n",
                                 status_code=400)
    log.info("Cache flushed successfully!")
    return PlainTextResponse("Cache flushed.\nPlease check backend logs for more details. "
                             "(When there are running or waiting requests, the operation will not be performed.)\n")


def _json_body_required(handler: Callable[[Request, dict], Awaitable[Response]]):
    async def wrapped(request: Request) -> Response:
        try:
            body = protocol.parse_json_body(await request.body(), request.headers.get("content-type", ""))
        except protocol.ApiError:
            body = None
        if not isinstance(body, dict):
            err = protocol.validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                              "input": None}])
            return json_response(err.body, err.status)
        return await handler(request, body)
    return wrapped


@_json_body_required
async def memory_occupation(request: Request, body: dict) -> Response:
    verb = "release" if "release" in request.url.path else "resume"
    log.info(f"{verb.capitalize()} memory occupation: tags={body.get('tags')} (simulated: nothing to free)")
    return json_response(None)


async def abort_request(request: Request) -> Response:
    """{"rid": ...} or {"abort_all": true}: graceful abort, finish_reason "abort"."""
    try:
        body = protocol.parse_json_body(await request.body(), request.headers.get("content-type", ""))
    except protocol.ApiError as exc:
        return json_response(exc.body, exc.status)
    if isinstance(body, dict):
        _state(request).engine.abort(rid=body.get("rid"), abort_all=bool(body.get("abort_all")))
    return Response(status_code=200)


async def pause_generation(request: Request) -> Response:
    state = _state(request)
    state.paused = request.url.path.startswith("/pause")
    verb = "paused" if state.paused else "continued"
    return json_response({"message": f"Generation {verb} successfully.", "status": "ok"})


async def not_found(request: Request, exc: Exception) -> Response:
    return json_response(NOT_FOUND, 404)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    return json_response({"detail": "Method Not Allowed"}, 405)


def routes(args: Namespace) -> list[Route]:
    out = [
        Route("/health", health), Route("/health_generate", health), Route("/ready", ready),
        Route("/ping", ping), Route("/", root, methods=["GET", "HEAD"]),
        Route("/v1/models", models), Route("/v1/models/{model:path}", model_by_name),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions.completions, methods=["POST"]),
        Route("/generate", completions.generate, methods=["POST", "PUT"]),
        Route("/model_info", model_info), Route("/get_model_info", model_info),
        Route("/server_info", server_info), Route("/get_server_info", server_info),
        Route("/flush_cache", flush_cache, methods=["GET", "POST"]),
        Route("/release_memory_occupation", memory_occupation, methods=["GET", "POST"]),
        Route("/resume_memory_occupation", memory_occupation, methods=["GET", "POST"]),
        Route("/abort_request", abort_request, methods=["POST"]),
        Route("/pause_generation", pause_generation, methods=["POST"]),
        Route("/continue_generation", pause_generation, methods=["POST"]),
        Route("/v1/loads", loads.loads),
    ]
    if args.enable_metrics:
        out.append(Route("/metrics", metrics_endpoint))
    return out


def build_app(state: SimState, lifespan=None) -> Starlette:
    args = state.args
    middleware = []
    if args.api_key or args.admin_api_key:  # outermost, as SGLang adds it last
        middleware.append(Middleware(AuthMiddleware, api_key=args.api_key, admin_key=args.admin_api_key))
    middleware.append(Middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True,
                                 allow_methods=["*"], allow_headers=["*"]))
    app = Starlette(routes=routes(args), middleware=middleware, lifespan=lifespan,
                    exception_handlers={404: not_found, 405: method_not_allowed})
    app.state.sim = state
    return app

