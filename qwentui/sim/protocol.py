"""Request validation and response shapes, as SGLang's pydantic models produce them (§3–§5).

Type errors mimic FastAPI/pydantic error dicts and come back as SGLang's 400 `Bad Request`
(never 422). Unknown fields are ignored, like pydantic's default `extra="ignore"`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ROLES_GENERIC = ("system", "assistant", "tool", "function", "developer")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")

_MSGS = {
    "missing": "Field required",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "float_type": "Input should be a valid number",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "int_type": "Input should be a valid integer",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
    "bool_type": "Input should be a valid boolean",
    "string_type": "Input should be a valid string",
    "list_type": "Input should be a valid list",
    "dict_type": "Input should be a valid dictionary",
}


class ApiError(Exception):
    """An HTTP error with SGLang's JSON body."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def error_body(message: str, err_type: str = "BadRequestError", code: int = 400) -> dict:
    return {"object": "error", "message": message, "type": err_type, "param": None, "code": code}


def bad_request(message: str) -> ApiError:
    return ApiError(400, error_body(message))


def validation_error(errors: list[dict]) -> ApiError:
    """FastAPI's RequestValidationError rendered by SGLang's handler: `str(exc) + " " + str(errors)`."""
    head = f"{len(errors)} validation error{'s' if len(errors) != 1 else ''}:\n"
    text = head + "".join(f"  {e}\n" for e in errors)
    return ApiError(400, error_body(f"{text} {errors}", "Bad Request", 400))


def _err(kind: str, loc: tuple, value: Any, msg: str | None = None) -> dict:
    return {"type": kind, "loc": ("body", *loc), "msg": msg or _MSGS[kind], "input": value}


def parse_json_body(raw: bytes, content_type: str) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise validation_error([{"loc": ["header", "content-type"],
                                 "msg": "Unsupported Media Type: Only 'application/json' is allowed",
                                 "type": "value_error"}])
    try:
        return json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        reason = getattr(exc, "msg", str(exc))
        raise validation_error([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error",
                                 "input": {}, "ctx": {"error": reason}}]) from None


def _as_float(v: Any, loc: tuple, errs: list) -> float | None:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            errs.append(_err("float_parsing", loc, v))
            return None
    errs.append(_err("float_type", loc, v))
    return None


def _as_int(v: Any, loc: tuple, errs: list) -> int | None:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        errs.append(_err("int_from_float", loc, v))
    elif isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    else:
        errs.append(_err("int_parsing" if isinstance(v, str) else "int_type", loc, v))
    return None


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def _as_bool(v: Any, loc: tuple, errs: list, default: bool | None) -> bool | None:
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in _TRUE | _FALSE:
        return v.lower() in _TRUE
    errs.append(_err("bool_parsing" if isinstance(v, str) else "bool_type", loc, v))
    return default


def _check_messages(value: Any, errs: list) -> list[dict]:
    if not isinstance(value, list):
        errs.append(_err("list_type", ("messages",), value))
        return []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            errs.append(_err("model_attributes_type", ("messages", i), m,
                             "Input should be a valid dictionary or object to extract fields from"))
            continue
        role = m.get("role")
        if role == "user" or role in ROLES_GENERIC:
            continue
        if role is None:
            errs.append(_err("missing", ("messages", i, "role"), m))
            continue
        allowed = ", ".join(f"'{r}'" for r in ROLES_GENERIC[:-1]) + f" or '{ROLES_GENERIC[-1]}'"
        errs.append(_err("literal_error", ("messages", i, "ChatCompletionMessageGenericParam", "role"), role,
                         f"Input should be {allowed}"))
        errs.append(_err("literal_error", ("messages", i, "ChatCompletionMessageUserParam", "role"), role,
                         "Input should be 'user'"))
    return value


@dataclass
class ChatParams:
    messages: list[dict]
    model: str = "default"
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    n: int = 1
    stop: list[str] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    separate_reasoning: bool = True
    stream_reasoning: bool = True
    template_kwargs: dict = field(default_factory=dict)
    rid: str | None = None
    prompt: str | None = None  # /v1/completions


def _stop_list(v: Any, errs: list) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(s, str) for s in v):
        return list(v)
    errs.append(_err("string_type", ("stop",), v))
    return []


def _common(body: dict, errs: list, p: ChatParams) -> None:
    """Fields shared by chat and completions."""
    model = body.get("model", "default")
    if not isinstance(model, str):
        errs.append(_err("string_type", ("model",), model))
    else:
        p.model = model
    p.stream = bool(_as_bool(body.get("stream"), ("stream",), errs, False))
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        errs.append(_err("model_attributes_type", ("stream_options",), so,
                         "Input should be a valid dictionary or object to extract fields from"))
    elif so:
        p.include_usage = bool(_as_bool(so.get("include_usage"), ("stream_options", "include_usage"), errs, False))
        p.continuous_usage = bool(_as_bool(so.get("continuous_usage_stats"),
                                           ("stream_options", "continuous_usage_stats"), errs, False))
    for name in ("temperature", "top_p", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty"):
        val = _as_float(body.get(name), (name,), errs)
        if name in ("temperature", "top_p"):
            setattr(p, name, val)
    for name in ("top_k", "seed"):
        _as_int(body.get(name), (name,), errs)
    p.n = _as_int(body.get("n"), ("n",), errs) or 1
    p.min_tokens = _as_int(body.get("min_tokens"), ("min_tokens",), errs) or 0
    p.ignore_eos = bool(_as_bool(body.get("ignore_eos"), ("ignore_eos",), errs, False))
    p.stop = _stop_list(body.get("stop"), errs)
    rid = body.get("rid")
    p.rid = rid if isinstance(rid, str) and rid else None


def parse_chat(body: Any, default_kwargs: dict | None = None) -> ChatParams:
    """Validate a /v1/chat/completions body (pydantic stage, then SGLang's own checks)."""
    if not isinstance(body, dict):
        raise validation_error([_err("model_attributes_type", (), body,
                                     "Input should be a valid dictionary or object to extract fields from")])
    errs: list[dict] = []
    if "messages" not in body:
        errs.append(_err("missing", ("messages",), body))
    messages = _check_messages(body.get("messages", []), errs)
    p = ChatParams(messages=messages)
    _common(body, errs, p)
    mct = _as_int(body.get("max_completion_tokens"), ("max_completion_tokens",), errs)
    mt = _as_int(body.get("max_tokens"), ("max_tokens",), errs)
    p.max_tokens = mct or mt
    p.separate_reasoning = bool(_as_bool(body.get("separate_reasoning"), ("separate_reasoning",), errs, True))
    p.stream_reasoning = bool(_as_bool(body.get("stream_reasoning"), ("stream_reasoning",), errs, True))
    p.template_kwargs = _template_kwargs(body, errs, default_kwargs or {})
    if errs:
        raise validation_error(errs)
    if not messages:
        raise bad_request("Messages cannot be empty.")
    _check_lora(p.model)
    return p


def _template_kwargs(body: dict, errs: list, defaults: dict) -> dict:
    ctk = body.get("chat_template_kwargs")
    if ctk is not None and not isinstance(ctk, dict):
        errs.append(_err("dict_type", ("chat_template_kwargs",), ctk))
        ctk = None
    kwargs = dict(ctk or {})
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):  # before-validator: {"enabled": ...} / {"effort": ...}
        if "enabled" in reasoning:
            kwargs.setdefault("thinking", bool(reasoning["enabled"]))
            kwargs.setdefault("enable_thinking", bool(reasoning["enabled"]))
        effort = reasoning.get("effort", effort)
    if effort is not None and effort not in REASONING_EFFORTS:
        allowed = ", ".join(f"'{e}'" for e in REASONING_EFFORTS[:-1]) + f" or '{REASONING_EFFORTS[-1]}'"
        errs.append(_err("literal_error", ("reasoning_effort",), effort, f"Input should be {allowed}"))
    elif effort == "none":
        kwargs.setdefault("thinking", False)
        kwargs.setdefault("enable_thinking", False)
    return {**defaults, **kwargs}


def _check_lora(model: str) -> None:
    if ":" in model:
        adapter = model.split(":", 1)[1]
        raise bad_request(f"LoRA adapter '{adapter}' was requested, but LoRA is not enabled. "
                          "Please launch the server with --enable-lora flag and preload adapters "
                          "using --lora-paths or /load_lora_adapter endpoint.")


def parse_completion(body: Any) -> ChatParams:
    if not isinstance(body, dict):
        raise validation_error([_err("model_attributes_type", (), body,
                                     "Input should be a valid dictionary or object to extract fields from")])
    errs: list[dict] = []
    prompt = body.get("prompt")
    if "prompt" not in body:
        errs.append(_err("missing", ("prompt",), body))
    elif isinstance(prompt, list) and all(isinstance(x, str) for x in prompt) and len(prompt) == 1:
        prompt = prompt[0]
    elif not isinstance(prompt, str):
        errs.append(_err("string_type", ("prompt",), prompt))
    p = ChatParams(messages=[], prompt=prompt if isinstance(prompt, str) else "")
    _common(body, errs, p)
    p.max_tokens = _as_int(body.get("max_tokens", 16), ("max_tokens",), errs)
    if errs:
        raise validation_error(errs)
    _check_lora(p.model)
    return p


def check_sampling(p: ChatParams) -> None:
    """SamplingParams.verify(): ValueErrors that SGLang returns as 400 BadRequestError."""
    if p.temperature is not None and p.temperature < 0:
        raise bad_request(f"temperature must be non-negative, got {p.temperature}.")
    if p.top_p is not None and not 0 < p.top_p <= 1:
        raise bad_request(f"top_p must be in (0, 1], got {p.top_p}.")
    if p.min_tokens < 0:
        raise bad_request(f"min_new_tokens must be in [0, max_new_tokens], got {p.min_tokens}.")
    if p.max_tokens is not None:
        if p.max_tokens < 0:
            raise bad_request(f"max_new_tokens must be at least 0, got {p.max_tokens}.")
        if p.min_tokens > p.max_tokens:
            raise bad_request(f"min_new_tokens must be in [0, max_new_tokens({p.max_tokens})], got {p.min_tokens}.")
    if p.n < 1:
        raise bad_request(f"n must be at least 1, got {p.n}.")


def check_context(prompt_tokens: int, max_tokens: int | None, context_len: int, explicit: bool) -> None:
    """TokenizerManager._validate_one_request and serving_chat's max_completion_tokens check."""
    if explicit and max_tokens is not None and max_tokens > context_len:
        raise bad_request(f"max_completion_tokens is too large: {max_tokens}."
                          f"This model supports at most {context_len} completion tokens.")
    if prompt_tokens >= context_len:
        raise bad_request(f"The input ({prompt_tokens} tokens) is longer than the model's context "
                          f"length ({context_len} tokens).")
    if max_tokens is not None and prompt_tokens + max_tokens > context_len:
        raise bad_request(
            f"Requested token count exceeds the model's maximum context length of {context_len} tokens. "
            f"You requested a total of {prompt_tokens + max_tokens} tokens: {prompt_tokens} tokens from "
            f"the input messages and {max_tokens} tokens for the completion. Please reduce the number of "
            "tokens in the input messages or the completion to fit within the limit.")


def dumps(obj: Any) -> str:
    """msgspec/pydantic/orjson style: compact, UTF-8 kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
