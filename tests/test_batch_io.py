"""Batch input parsing (every bad line form) and durable, resumable output."""

from __future__ import annotations

import json
import os

import pytest

from qwentui.batch.jsonl import OutputWriter, load_for_resume, parse_line, parse_lines, read_input
from qwentui.errors import UsageError


def write_lines(path, *lines: str) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- input


def test_prompt_and_messages_forms(tmp_path):
    path = write_lines(
        tmp_path / "in.jsonl",
        '{"id": "a", "prompt": "hi"}',
        '{"messages": [{"role": "user", "content": "yo"}], "max_tokens": 5, "thinking": false}',
        "",
        '{"id": 7, "prompt": "x", "system": "be brief", "temperature": 0, "stop": ["\\n"]}',
    )
    a, b, c = read_input(path)
    assert (a.id, a.line, a.messages, a.error) == ("a", 1, ({"role": "user", "content": "hi"},), None)
    assert (b.id, b.line, b.params) == (2, 2, {"max_tokens": 5, "thinking": False})  # id = line number
    assert c.id == 7 and c.line == 4 and c.messages[0] == {"role": "system", "content": "be brief"}
    assert c.params == {"temperature": 0, "stop": ["\n"]}


@pytest.mark.parametrize("text,fragment", [
    ('{"id": 1, "prompt": "hi"', "line 3: invalid JSON"),
    ('[1, 2]', "line 3: expected a JSON object, got list"),
    ('{"id": 1}', 'line 3: needs exactly one of "prompt" or "messages"'),
    ('{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}', "needs exactly one of"),
    ('{"prompt": ""}', '"prompt" must be a non-empty string'),
    ('{"prompt": 5}', '"prompt" must be a non-empty string'),
    ('{"messages": []}', '"messages" must be a non-empty list'),
    ('{"messages": [{"content": "no role"}]}', "messages[0] needs a role"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "messages[0] needs a role"),
    ('{"prompt": "x", "max_token": 5}', "unknown key 'max_token' (did you mean 'max_tokens'?)"),
    ('{"prompt": "x", "max_tokens": 0}', "max_tokens must be a positive integer, got 0"),
    ('{"prompt": "x", "max_tokens": "5"}', 'max_tokens must be a positive integer, got "5"'),
    ('{"prompt": "x", "max_tokens": true}', "max_tokens must be a positive integer, got true"),
    ('{"prompt": "x", "temperature": 9}', "temperature must be a number 0-2"),
    ('{"prompt": "x", "thinking": "yes"}', "thinking must be true or false"),
    ('{"prompt": "x", "stop": [1]}', "stop must be a string or a list of strings"),
    ('{"id": [1], "prompt": "x"}', "id must be a string or an integer"),
    ('{"id": true, "prompt": "x"}', "id must be a string or an integer"),
    ('{"prompt": "x", "system": 3}', '"system" must be a string'),
])
def test_bad_lines_become_error_items_naming_the_line(text, fragment):
    item = parse_line(text, 3)
    assert item.error is not None and fragment in item.error
    assert item.error.startswith("line 3:")


def test_other_lines_still_parse_around_a_bad_one():
    items = parse_lines(['{"prompt": "a"}', "{oops", '{"prompt": "c"}'])
    assert [i.error is None for i in items] == [True, False, True]
    assert items[1].id == 2 and "invalid JSON" in items[1].error


def test_input_missing(tmp_path):
    with pytest.raises(UsageError, match="input file not found: .*nope.jsonl"):
        read_input(tmp_path / "nope.jsonl")


def test_input_is_a_directory(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        read_input(tmp_path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_input(tmp_path, content):
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    with pytest.raises(UsageError, match="has no requests"):
        read_input(path)


def test_duplicate_ids(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", '{"id": "x", "prompt": "a"}', '{"prompt": "b"}',
                       '{"id": "x", "prompt": "c"}')
    with pytest.raises(UsageError, match=r"in.jsonl:3: duplicate id \"x\" \(first used on line 1\)"):
        read_input(path)


def test_generated_id_never_collides_with_an_explicit_id(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", '{"id": 2, "prompt": "a"}', '{"prompt": "b"}')
    assert [item.id for item in read_input(path)] == [2, "line-2"]  # issue 16 item 9


def test_string_and_int_ids_are_distinct(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", '{"id": "1", "prompt": "a"}', '{"id": 1, "prompt": "b"}')
    assert len(read_input(path)) == 2


# ---------------------------------------------------------------- output


def read_out(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writer_fsyncs_in_groups(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    now = [0.0]
    w = OutputWriter(tmp_path / "out.jsonl", every=3, interval=10, clock=lambda: now[0])
    for i in range(7):
        w.write({"id": i})
    assert len(synced) == 2  # after lines 3 and 6
    now[0] = 11
    w.write({"id": 7})  # the interval also triggers a sync
    assert len(synced) == 3
    w.close()
    assert [r["id"] for r in read_out(tmp_path / "out.jsonl")] == list(range(8))


def test_lines_are_on_disk_before_close(tmp_path):
    w = OutputWriter(tmp_path / "out.jsonl", every=1)
    w.write({"id": "a", "content": "é"})
    assert read_out(tmp_path / "out.jsonl") == [{"id": "a", "content": "é"}]
    w.close()


def test_out_not_writable(tmp_path):
    with pytest.raises(UsageError, match="cannot write .*no/such/dir/out.jsonl"):
        OutputWriter(tmp_path / "no" / "such" / "dir" / "out.jsonl")


def test_out_is_a_directory(tmp_path):
    with pytest.raises(UsageError, match="output is a directory"):
        OutputWriter(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_out_read_only(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("")
    out.chmod(0o400)
    with pytest.raises(UsageError, match="cannot write"):
        OutputWriter(out)


def test_existing_results_are_not_overwritten_by_accident(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "content": "precious"}\n')
    with pytest.raises(UsageError, match="already has results; use --resume .* or --overwrite"):
        OutputWriter(out)
    OutputWriter(out, overwrite=True).close()
    assert out.read_text() == ""


def test_resume_keeps_answers_drops_retryable_errors_and_a_torn_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(
        '{"id": 1, "content": "ok"}\n'
        '{"id": 2, "line": 2, "error": "engine unreachable", "retryable": true}\n'
        '{"id": 3, "line": 3, "error": "line 3: invalid JSON", "retryable": false}\n'
        '{"id": "4", "content": "ok"}\n'
        '{"id": 5, "cont'  # killed mid-write
    )
    done, keep, rewrite = load_for_resume(out)
    assert done == {"1", "3", '"4"'} and rewrite and len(keep) == 3
    w = OutputWriter(out, resume=True)
    assert w.done == done
    w.write({"id": 2, "content": "redone"})
    w.close()
    assert [r["id"] for r in read_out(out)] == [1, 3, "4", 2]


def test_resume_of_a_clean_file_only_appends(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "content": "ok"}\n')
    inode = out.stat().st_ino
    w = OutputWriter(out, resume=True)
    w.write({"id": 2})
    w.close()
    assert out.stat().st_ino == inode and len(read_out(out)) == 2


def test_resume_without_out_starts_fresh(tmp_path):
    w = OutputWriter(tmp_path / "out.jsonl", resume=True)
    assert w.done == set()
    w.close()


def test_atomic_write_keeps_the_old_file_when_it_fails(tmp_path, monkeypatch):
    """One atomic write for state files and batch OUT rewrites (paths.write_atomic)."""
    import os

    from qwentui import paths

    target = tmp_path / "out.jsonl"
    paths.write_atomic(target, b"old\n")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        paths.write_atomic(target, b"new\n")
    assert target.read_bytes() == b"old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    monkeypatch.undo()
    paths.write_private(tmp_path / "state" / "key", "secret")
    assert (tmp_path / "state" / "key").stat().st_mode & 0o777 == 0o600
