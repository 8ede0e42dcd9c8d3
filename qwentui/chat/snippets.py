"""How other programs reach the engine: curl, openai SDK, LangChain and env-var examples.

One builder for the console's F7 screen and `qwentui serve`'s start-up print. Thinking is
switched through `chat_template_kwargs` (SGLang ignores a top-level `enable_thinking`;
see contracts/sglang.md §3). With `key_in_env` the examples read the key from
$OPENAI_API_KEY instead of carrying it (for text that lands in logs and scrollback).
"""

from __future__ import annotations

import json
import shlex

KEY_ENV = "OPENAI_API_KEY"


def _key_expr(key: str, key_in_env: bool) -> str:
    """The api_key argument as Python source."""
    return f"os.environ[{KEY_ENV!r}]" if key and key_in_env else repr(key or "EMPTY")


def _py_head(module: str, key: str, key_in_env: bool) -> str:
    return ("import os\n" if key and key_in_env else "") + module + "\n\n"


def _curl(base: str, model: str, key: str, thinking: bool, key_in_env: bool) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello!"}],
            "chat_template_kwargs": {"enable_thinking": thinking}}
    if key and key_in_env:
        auth = f'  -H "Authorization: Bearer ${KEY_ENV}" \\\n'
    else:
        auth = f"  -H {shlex.quote('Authorization: Bearer ' + key)} \\\n" if key else ""
    return (f"curl {base}/v1/chat/completions \\\n"
            f"  -H 'Content-Type: application/json' \\\n{auth}"
            f"  -d {shlex.quote(json.dumps(body))}\n")


def _openai(base: str, model: str, key: str, thinking: bool, key_in_env: bool) -> str:
    return (_py_head("from openai import OpenAI", key, key_in_env) +
            f"client = OpenAI(base_url={base + '/v1'!r}, api_key={_key_expr(key, key_in_env)})\n"
            f"r = client.chat.completions.create(\n"
            f"    model={model!r},\n"
            f"    messages=[{{'role': 'user', 'content': 'Hello!'}}],\n"
            f"    # Qwen3 thinking on/off: SGLang reads it from chat_template_kwargs\n"
            f"    extra_body={{'chat_template_kwargs': {{'enable_thinking': {thinking}}}}},\n"
            f")\n"
            f"msg = r.choices[0].message\n"
            f"print(getattr(msg, 'reasoning_content', None))  # the thinking, if on\n"
            f"print(msg.content)\n")


def _langchain(base: str, model: str, key: str, thinking: bool, key_in_env: bool) -> str:
    return (_py_head("from langchain_openai import ChatOpenAI", key, key_in_env) +
            f"llm = ChatOpenAI(\n"
            f"    base_url={base + '/v1'!r},\n"
            f"    api_key={_key_expr(key, key_in_env)},\n"
            f"    model={model!r},\n"
            f"    extra_body={{'chat_template_kwargs': {{'enable_thinking': {thinking}}}}},\n"
            f")\n"
            f"print(llm.invoke('Hello!').content)\n")


def _env(base: str, model: str, key: str, thinking: bool, key_in_env: bool) -> str:
    lines = [f"export OPENAI_BASE_URL={shlex.quote(base + '/v1')}"]
    if not (key and key_in_env):  # otherwise it is set already
        lines.append(f"export {KEY_ENV}={shlex.quote(key or 'EMPTY')}")
    return "\n".join([*lines, f"export OPENAI_MODEL={shlex.quote(model)}"]) + "\n"


_BUILDERS = {"curl": _curl, "openai": _openai, "langchain": _langchain, "env": _env}


def snippets(base_url: str, model: str, api_key: str, *, thinking: bool = True,
             key_in_env: bool = False) -> dict[str, str]:
    """Each example as text: curl, openai, langchain, env."""
    base = base_url.rstrip("/")
    return {name: build(base, model, api_key, thinking, key_in_env) for name, build in _BUILDERS.items()}
