"""`python -m framework` over damaged storage folders: every command either works or exits non-zero with
one clear line on stderr; never a traceback. Damaged run files are named in the message."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framework import Runtime
from framework.cli import main

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, data: str | bytes):
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)


def _replace_run(root, run_id, **fields):
    path = root / "runs" / f"{run_id}.json"
    write(path, json.dumps({**json.loads(path.read_text()), **fields}))


def _each_index(root, text):
    for path in (root / "indexes").rglob("*.json"):
        write(path, text)


def _replace_dir_by_file(root, name):
    shutil.rmtree(root / name)
    write(root / name, "not a folder")


# name -> (damage, does the damage sit in a run file every command reads?)
DAMAGE = {
    "run file not JSON": (lambda r, rid: write(r / "runs" / "bad.json", "{not json"), True),
    "run file a JSON list": (lambda r, rid: write(r / "runs" / "bad.json", "[]"), True),
    "run file wrong types": (lambda r, rid: write(r / "runs" / "bad.json", json.dumps({"id": 5, "decisions": "x"})), True),
    "run file binary": (lambda r, rid: write(r / "runs" / "bad.json", b"\x00\xff\xfe\x00"), True),
    "run file nested 100k deep": (lambda r, rid: write(r / "runs" / "bad.json", "[" * 100_000 + "]" * 100_000), True),
    "run file with NaN": (lambda r, rid: write(r / "runs" / "bad.json", '{"id": "bad", "started_at": NaN}'), True),
    "decisions not a list": (lambda r, rid: _replace_run(r, rid, decisions="oops"), True),
    "options not a list": (lambda r, rid: _replace_run(r, rid, decisions=[{"id": "d", "options": 7}]), True),
    "run file is a folder": (lambda r, rid: (r / "runs" / "dir.json").mkdir(), True),
    "run file a symlink loop": (lambda r, rid: os.symlink(r / "runs" / "loop.json", r / "runs" / "loop.json"), True),
    "indexes not JSON": (lambda r, rid: _each_index(r, "{"), False),
    "indexes of wrong types": (lambda r, rid: _each_index(r, "[1, null, {}]"), False),
    "indexes naming missing runs": (lambda r, rid: _each_index(r, '["run_missing"]'), False),
    "summaries not JSON": (lambda r, rid: [write(p, "{") for p in (r / "summaries").rglob("*.json")], False),
    "runs is a file": (lambda r, rid: _replace_dir_by_file(r, "runs"), True),
    "indexes is a file": (lambda r, rid: _replace_dir_by_file(r, "indexes"), False),
}


def make_folder(root: Path) -> str:
    runtime = Runtime(root)
    runtime.start_run("g", "d")
    decision = runtime.decide(intent="i", options=[{"id": "a", "description": "A"}], chosen="a", reasoning="r")
    runtime.record_outcome(decision_id=decision, success=False, error="boom")
    runtime.end_run(success=False, narrative="n")
    return next((root / "runs").glob("*.json")).stem


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_command_over_a_damaged_folder_works_or_fails_with_one_line(tmp_path, damage):
    root = tmp_path / "storage"
    run_id = make_folder(root)
    corrupt, in_every_read = DAMAGE[damage]
    corrupt(root, run_id)
    commands = [["runs", "list"], ["runs", "show", run_id], ["stats"], ["patterns", "g"], ["analyze", run_id],
                ["suggest", "g"], ["runs", "list", "--json"]]
    for argv in commands:
        code, out, err = run_cli([*argv, "--storage", str(root)])
        assert "Traceback" not in err + out, (damage, argv, err)
        if code != 0:
            assert code == 2, (damage, argv, code)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("framework: error: "), (damage, argv, err)
            assert out == "", (damage, argv)
    if in_every_read:
        code, _out, err = run_cli(["stats", "--storage", str(root)])
        assert code == 2, damage
        assert "runs" in err


@pytest.mark.parametrize("name", ["indexes", "summaries"])
def test_a_sub_folder_replaced_by_a_file_is_named_in_the_message(tmp_path, name):
    root = tmp_path / "storage"
    make_folder(root)
    _replace_dir_by_file(root, name)
    code, out, err = run_cli(["runs", "list", "--storage", str(root)])
    assert code == 2 and out == ""
    assert err.strip() == (f"framework: error: {root} is not a usable storage folder: {root / name} is a file, "
                           "not a directory")


def test_the_real_process_prints_no_traceback_for_a_binary_run_file(tmp_path):
    root = tmp_path / "storage"
    make_folder(root)
    write(root / "runs" / "bad.json", b"\x00\xff\xfe garbage")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRAMEWORK_")}
    done = subprocess.run([sys.executable, "-m", "framework", "stats", "--storage", str(root)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith(f"framework: error: {root / 'runs' / 'bad.json'} is not a valid run file")
