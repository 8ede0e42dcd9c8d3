"""Issue 16 item 16: every directory qwentui creates is 0700, parents included."""

from __future__ import annotations

import os
import stat

import pytest

from qwentui import paths


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_ensure_dir_creates_missing_parents_0700(tmp_path, umask):
    old = os.umask(umask)
    try:
        target = tmp_path / "home" / ".local" / "state" / "qwentui"
        paths.ensure_dir(target)
    finally:
        os.umask(old)
    for made in (target, target.parent, target.parent.parent, target.parent.parent.parent):
        assert mode(made) == 0o700, made


def test_ensure_dir_leaves_existing_directories_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    paths.ensure_dir(shared / "qwentui")
    assert mode(shared) == 0o755 and mode(shared / "qwentui") == 0o700


def test_state_files_land_in_0700_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "fresh" / "state"))
    from qwentui.cost.ledger import Ledger, default_path

    Ledger(default_path()).close()
    assert mode(tmp_path / "fresh") == 0o700
    assert mode(tmp_path / "fresh" / "state") == 0o700
    assert mode(default_path().parent) == 0o700
    assert mode(default_path()) == 0o600


def test_ensure_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        paths.ensure_dir(tmp_path / "file" / "sub")
