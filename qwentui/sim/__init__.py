"""SGLang simulator: a test double that behaves like `sglang serve` for Qwen3-1.7B.

It is labelled SIMULATED everywhere (first log line, `server_args`, `/server_info`); it never
pretends to be a model. Run it with `python -m qwentui.sim --model-path M --port P ...`.
Kept import-light: the scheduler child imports only `qwentui.sim.scheduler`.
"""
