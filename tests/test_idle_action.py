"""The idle action runner: stop the engine, close the ledger, power off exactly once."""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest

from qwentui.errors import QwentuiError, UsageError
from qwentui.idle.actions import ActionRunner, describe_stop_path, expand_command, resolve_command


class FakeSupervisor:
    def __init__(self, events: list, fail: str | None = None) -> None:
        self.events, self.fail = events, fail

    async def stop(self, reason: str = "user") -> None:
        await asyncio.sleep(0)
        self.events.append(f"stop:{reason}")
        if self.fail:
            raise QwentuiError(self.fail)


@pytest.fixture
def events() -> list:
    return []


def marker_command(tmp_path) -> list[str]:
    """Appends one line to `marker`, and only if the ledger was closed before it ran."""
    return ["sh", "-c", 'test -f "$1" && echo ran >> "$2"', "sh",
            str(tmp_path / "ledger-closed"), str(tmp_path / "marker")]


def close_ledger_into(events: list, tmp_path):
    def close(reason: str) -> None:
        events.append(f"ledger:{reason}")
        (tmp_path / "ledger-closed").write_text(reason)
    return close


async def test_stop_engine_stops_and_closes_the_ledger(events, tmp_path):
    runner = ActionRunner(FakeSupervisor(events), close_ledger=close_ledger_into(events, tmp_path))
    result = await runner.run("idle")
    assert result.ok and result.engine_stopped and result.ledger_closed and not result.ran
    assert result.message == "engine stopped (idle)"
    assert events == ["stop:idle", "ledger:idle"]
    assert not (tmp_path / "marker").exists()


async def test_poweroff_runs_once_after_the_ledger_is_closed(events, tmp_path):
    runner = ActionRunner(FakeSupervisor(events), action="poweroff",
                          poweroff_command=marker_command(tmp_path),
                          close_ledger=close_ledger_into(events, tmp_path))
    first, second = await asyncio.gather(runner.run("idle"), runner.run("idle"))
    third = await runner.run("budget")
    assert first is second is third
    assert first.ok and first.ran and first.engine_stopped and first.ledger_closed
    assert first.message.startswith("power off requested: sh -c")
    assert (tmp_path / "marker").read_text() == "ran\n"
    assert events == ["stop:idle", "ledger:idle"]


async def test_async_ledger_callback_is_awaited(events, tmp_path):
    async def close(reason: str) -> None:
        await asyncio.sleep(0.01)
        (tmp_path / "ledger-closed").write_text(reason)

    runner = ActionRunner(FakeSupervisor(events), action="poweroff",
                          poweroff_command=marker_command(tmp_path), close_ledger=close)
    assert (await runner.run("idle")).ok
    assert (tmp_path / "marker").read_text() == "ran\n"


async def test_env_vars_are_expanded(events, tmp_path):
    cmd = ["sh", "-c", 'echo "$1" > "$2"', "sh", "pod=$RUNPOD_POD_ID", str(tmp_path / "marker")]
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=cmd,
                          environ={"RUNPOD_POD_ID": "abc123", "PATH": "/usr/bin:/bin"})
    assert (await runner.run("idle")).ok
    assert (tmp_path / "marker").read_text() == "pod=abc123\n"


async def test_unset_variable_is_a_clear_error_and_engine_still_stopped(events):
    runner = ActionRunner(FakeSupervisor(events), action="poweroff",
                          poweroff_command=["runpodctl", "stop", "pod", "${RUNPOD_POD_ID}"], environ={})
    result = await runner.run("idle")
    assert not result.ok and not result.ran and result.engine_stopped
    assert result.message == ("engine stopped; cannot power off: idle.poweroff_command uses "
                              "$RUNPOD_POD_ID, which is not set in the environment")
    assert events == ["stop:idle"]


async def test_failing_command_polkit_denied(events):
    denied = ["sh", "-c", "echo 'Failed to power off system via logind: Interactive authentication "
              "required.' >&2; exit 1"]
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=denied)
    result = await runner.run("idle")
    assert not result.ok and result.ran and result.engine_stopped
    assert "failed (exit 1): Failed to power off system via logind" in result.message
    assert result.message.startswith("engine stopped; ")
    assert "polkit" in result.hint
    assert events == ["stop:idle"]


async def test_failing_command_without_a_known_cause_has_no_hint(events):
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=["false"])
    result = await runner.run("idle")
    assert not result.ok and result.hint is None
    assert result.error == "false failed (exit 1): no output"


async def test_command_not_found_and_no_fallback(events):
    runner = ActionRunner(FakeSupervisor(events), action="poweroff",
                          poweroff_command=["no-such-poweroff-xyz"], which=lambda name: None)
    result = await runner.run("idle")
    assert not result.ok and result.engine_stopped
    assert "poweroff command not found: no-such-poweroff-xyz (and no shutdown either)" in result.message


async def test_command_not_found_falls_back_to_shutdown_dry_run(events):
    printed: list[str] = []
    which = {"shutdown": "/sbin/shutdown"}.get
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=["systemctl", "poweroff"],
                          dry_run=True, which=which, print_fn=printed.append)
    result = await runner.run("idle")
    assert result.ok and result.dry_run and not result.ran and result.command == ("shutdown", "-h", "now")
    assert printed == ["dry run: would power off with: shutdown -h now"]
    assert result.message == "systemctl not found; using shutdown -h now; dry run: would run shutdown -h now"


async def test_dry_run_prints_instead_of_running(events, tmp_path):
    printed: list[str] = []
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=marker_command(tmp_path),
                          dry_run=True, print_fn=printed.append, close_ledger=close_ledger_into(events, tmp_path))
    result = await runner.run("idle")
    assert result.ok and not result.ran and result.engine_stopped and result.ledger_closed
    assert printed and printed[0].startswith("dry run: would power off with: sh -c")
    assert not (tmp_path / "marker").exists()


async def test_engine_stop_failure_is_reported(events):
    runner = ActionRunner(FakeSupervisor(events, fail="engine did not exit"))
    result = await runner.run("idle")
    assert not result.ok and not result.engine_stopped
    assert result.message == "could not stop the engine: engine did not exit"


async def test_poweroff_still_runs_when_engine_stop_failed(events, tmp_path):
    (tmp_path / "ledger-closed").write_text("x")
    runner = ActionRunner(FakeSupervisor(events, fail="engine did not exit"), action="poweroff",
                          poweroff_command=marker_command(tmp_path))
    result = await runner.run("budget")
    assert result.ok and result.ran and result.error == "engine did not exit"
    assert result.message.endswith("; engine stop failed: engine did not exit")
    assert (tmp_path / "marker").read_text() == "ran\n"


async def test_ledger_failure_does_not_block_the_stop(events):
    def broken(reason: str) -> None:
        raise OSError("disk full")

    result = await ActionRunner(FakeSupervisor(events), close_ledger=broken).run("idle")
    assert result.ok and result.engine_stopped and not result.ledger_closed


async def test_hanging_command_times_out(events):
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=["sleep", "30"],
                          command_timeout=0.3)
    result = await runner.run("idle")
    assert not result.ok and result.error == "sleep 30 did not finish within 0.3s"


async def test_cancelling_the_caller_does_not_cancel_the_action(events, tmp_path):
    (tmp_path / "ledger-closed").write_text("x")
    cmd = ["sh", "-c", 'sleep 0.2; echo ran >> "$1"', "sh", str(tmp_path / "marker")]
    runner = ActionRunner(FakeSupervisor(events), action="poweroff", poweroff_command=cmd)
    task = asyncio.ensure_future(runner.run("idle"))
    await asyncio.sleep(0.05)
    task.cancel()
    result = await runner.run("idle")
    assert result.ok and (tmp_path / "marker").read_text() == "ran\n"


async def test_no_supervisor_attached_mode(tmp_path):
    result = await ActionRunner(None).run("idle")
    assert result.ok


def test_expand_and_resolve():
    assert expand_command(["echo", "$A", "${B}x", "$0"], {"A": "1", "B": "2"}) == ["echo", "1", "2x", "$0"]
    with pytest.raises(UsageError, match="empty"):
        expand_command([], {})
    assert resolve_command(["sh", "-c", "true"], {}) == (["sh", "-c", "true"], "")
    line = describe_stop_path(["no-such-xyz"], {}, which=lambda n: None)
    assert line == "poweroff: unavailable: poweroff command not found: no-such-xyz (and no shutdown either)"
    assert describe_stop_path(["sh"], {}).startswith(f"poweroff: sh ({shutil.which('sh')})")


def test_idle_modules_do_not_import_the_ui():
    import subprocess

    code = ("import sys, qwentui.idle.watchdog, qwentui.idle.actions; "
            "bad = [m for m in sys.modules if m.startswith(('textual', 'qwentui.ui', 'httpx'))]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- watchdog and runner together (the loop Runtime.step runs each tick) ------------------


async def _watch(wd, runner, sample, on_status, sleep):
    while True:
        wd.observe_metrics(await sample())
        status = wd.tick()
        on_status(status)
        if status.action_due:
            result = await runner.run(status.reason_action)
            wd.action_done()
            on_status(wd.tick())
            return result
        await sleep(1.0)


async def test_watchdog_and_runner_act_once_when_idle_with_a_fake_clock(events):
    from qwentui.idle.watchdog import IdleState, MetricsSample, Watchdog

    now = [0.0]
    wd = Watchdog(10, 3, clock=lambda: now[0])
    samples = iter([MetricsSample(running=0, requests_total=0)] * 3 + [MetricsSample(running=0, requests_total=1)]
                   + [MetricsSample(running=0, requests_total=1)] * 100)

    async def sample():
        return next(samples)

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    seen = []
    runner = ActionRunner(FakeSupervisor(events))
    result = await _watch(wd, runner, sample, seen.append, fake_sleep)
    assert result.ok and events == ["stop:idle"]
    # the external request seen at t=3 restarted the 10 s timer: it acts at t=13
    assert now[0] == 13.0
    states = [s.state for s in seen]
    assert states[-2:] == [IdleState.ACTING, IdleState.DONE]
    assert sum(s.warning_started for s in seen) == 1 and sum(s.action_due for s in seen) == 1
    assert [s.seconds_left for s in seen if s.state is IdleState.WARNING] == [3.0, 2.0, 1.0]
