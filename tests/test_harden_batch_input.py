"""Issue 16 items 8 and 9: JSONL lines end at \\n only, non-UTF-8 is an error line, and
implicit ids never collide with explicit ones."""

from __future__ import annotations

import json

import pytest

from qwentui.batch.jsonl import read_input
from qwentui.errors import UsageError


def write(tmp_path, data: bytes):
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\r"])
def test_unicode_line_separators_inside_a_prompt_stay_in_it(tmp_path, sep):
    prompt = f"first{sep}second"
    raw = json.dumps({"id": "a", "prompt": prompt}, ensure_ascii=False) + "\n" + '{"id": "b", "prompt": "x"}\n'
    items = read_input(write(tmp_path, raw.encode("utf-8")))
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].error is None and items[0].messages[0]["content"] == prompt
    assert [i.line for i in items] == [1, 2]


def test_crlf_input_still_parses(tmp_path):
    items = read_input(write(tmp_path, b'{"id": 1, "prompt": "a"}\r\n{"id": 2, "prompt": "b"}\r\n'))
    assert [(i.id, i.error) for i in items] == [(1, None), (2, None)]


def test_a_utf8_bom_is_not_an_error(tmp_path):
    items = read_input(write(tmp_path, b'\xef\xbb\xbf{"id": 1, "prompt": "a"}\n'))
    assert items[0].error is None


def test_non_utf8_bytes_are_an_error_line_not_replacement_characters(tmp_path):
    raw = b'{"id": "ok", "prompt": "fine"}\n{"id": "bad", "prompt": "caf\xe9"}\n{"id": "z", "prompt": "\xff"}\n'
    items = read_input(write(tmp_path, raw))
    assert items[0].error is None
    assert items[1].error == "line 2: not valid UTF-8 (byte 0xe9 at column 29)"
    assert items[2].error.startswith("line 3: not valid UTF-8 (byte 0xff")
    assert all("\ufffd" not in json.dumps(i.messages) for i in items)


def test_implicit_ids_do_not_collide_with_explicit_ids(tmp_path):
    lines = ['{"prompt": "a"}', '{"id": 1, "prompt": "b"}', '{"prompt": "c"}', '{"id": 3, "prompt": "d"}',
             '{"id": "line-3", "prompt": "e"}', "{broken"]
    items = read_input(write(tmp_path, ("\n".join(lines) + "\n").encode()))
    ids = [i.id for i in items]
    assert len({json.dumps(i) for i in ids}) == len(ids)  # no "duplicate id" for the job
    assert ids[1] == 1 and ids[3] == 3 and ids[4] == "line-3"  # explicit ids are kept
    assert ids[0] == "line-1" and ids[2] == "line-3-2" and ids[5] == 6  # the line number when free
    assert read_input(write(tmp_path, ("\n".join(lines) + "\n").encode())) == items  # stable for --resume


def test_explicit_duplicates_are_still_refused(tmp_path):
    with pytest.raises(UsageError, match="duplicate id 1"):
        read_input(write(tmp_path, b'{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n'))


def test_batch_end_to_end_with_mixed_ids_answers_every_line(tmp_path, capsys):
    from qwentui.cli import main
    from tests.conftest import free_port

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[engine]\nkind = "sim"\nport = {free_port()}\nstop_grace = "3s"\n'
                   'overrides = {"--sim-cold-start" = "0.2s", "--sim-tokens-per-s" = 2000}\n')
    src = write(tmp_path, b'{"prompt": "a", "max_tokens": 4}\n{"id": 1, "prompt": "b", "max_tokens": 4}\n'
                          b'{"id": "x", "prompt": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    code = main(["--config", str(cfg), "batch", str(src), "-o", str(out)])
    records = {json.dumps(r["id"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert code == 1, capsys.readouterr().err  # one bad line: its error line says so
    assert set(records) == {'"line-1"', "1", "3"}
    assert "content" in records['"line-1"'] and "content" in records["1"]
    assert "not valid UTF-8" in records["3"]["error"] and records["3"]["retryable"] is False
