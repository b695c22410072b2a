"""The console's host side (infra/console.py): Node version checks, when npm ci runs, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from infra import console
from infra.host import StackError


def fake_node(tmp_path: Path, version: str) -> str:
    path = tmp_path / "node"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_node_major_reads_the_version(tmp_path: Path) -> None:
    assert console.node_major(fake_node(tmp_path, "v18.19.0")) == 18
    assert console.node_major(fake_node(tmp_path, "v22.1.0")) == 22
    assert console.node_major(fake_node(tmp_path, "garbage")) == 0


def test_a_too_old_node_without_root_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_node(tmp_path, "v16.20.0")
    monkeypatch.setattr(console.shutil, "which", lambda name: old if name == "node" else "/usr/bin/npm")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match="apt-get install -y nodejs npm"):
        console.ensure_node()


def test_npm_ci_runs_only_when_the_lock_file_is_newer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "CONSOLE_DIR", tmp_path)
    (tmp_path / "package-lock.json").write_text("{}")
    assert not console.dependencies_current()  # no node_modules yet
    installed = tmp_path / "node_modules" / ".package-lock.json"
    installed.parent.mkdir()
    installed.write_text("{}")
    lock_time = (tmp_path / "package-lock.json").stat().st_mtime
    os.utime(installed, (lock_time + 5, lock_time + 5))
    assert console.dependencies_current()
    os.utime(tmp_path / "package-lock.json", (lock_time + 10, lock_time + 10))  # the lock file changed since
    assert not console.dependencies_current()


def test_build_if_missing_keeps_an_existing_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "dist" / "index.html"
    index.parent.mkdir()
    index.write_text("<!doctype html>")
    monkeypatch.setattr(console, "DIST_INDEX", index)
    monkeypatch.setattr(console, "ensure_node", lambda: pytest.fail("must not look for node"))
    assert console.build(if_missing=True) == index.parent
