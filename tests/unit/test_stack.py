"""The stack file: written whole and private, read only while its `loom dev` lives, and never
over the environment (docs/architecture.md#the-stack-file)."""

import json
import os
import stat
import subprocess
import sys

from loom_assets.stack import STACK_FILE, apply_stack, remove_stack, running_stack, write_stack

SERVICES = {"DATABASE_URL": "postgresql://loom:secret@127.0.0.1:5999/loom", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9999",
            "dagster_url": "http://127.0.0.1:3999", "day_url": None}


def test_the_stack_file_is_private_and_names_its_process(tmp_path):
    path = write_stack(tmp_path, SERVICES)
    assert path == tmp_path / STACK_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the URL holds a password
    written = json.loads(path.read_text())
    assert written["pid"] == os.getpid() and {k: written[k] for k in SERVICES} == SERVICES
    assert [p.name for p in tmp_path.iterdir()] == [STACK_FILE]  # no temporary file left
    assert running_stack(tmp_path)["DATABASE_URL"] == SERVICES["DATABASE_URL"]


def test_a_stack_whose_process_is_gone_is_ignored(tmp_path):
    write_stack(tmp_path, SERVICES)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stack = json.loads((tmp_path / STACK_FILE).read_text())
    (tmp_path / STACK_FILE).write_text(json.dumps({**stack, "pid": int(dead.stdout)}))
    assert running_stack(tmp_path) is None
    # The same pid started at another time is another process that reused the number.
    (tmp_path / STACK_FILE).write_text(json.dumps({**stack, "started_at": stack["started_at"] - 3600}))
    assert running_stack(tmp_path) is None
    (tmp_path / STACK_FILE).write_text("{not json")
    assert running_stack(tmp_path) is None
    assert running_stack(tmp_path / "nowhere") is None


def test_the_environment_wins_over_the_stack(tmp_path):
    write_stack(tmp_path, SERVICES)
    environ = {"DATABASE_URL": "postgresql://mine/db", "KAFKA_BOOTSTRAP_SERVERS": ""}
    assert apply_stack(tmp_path, environ) is not None
    assert environ == {"DATABASE_URL": "postgresql://mine/db", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9999",
                       "LOOM_DAGSTER_URL": "http://127.0.0.1:3999"}
    assert apply_stack(tmp_path / "nowhere", environ) is None


def test_only_the_writer_removes_the_stack_file(tmp_path):
    write_stack(tmp_path, SERVICES)
    stack = json.loads((tmp_path / STACK_FILE).read_text())
    (tmp_path / STACK_FILE).write_text(json.dumps({**stack, "pid": 1}))
    remove_stack(tmp_path)
    assert (tmp_path / STACK_FILE).exists()
    write_stack(tmp_path, SERVICES)
    remove_stack(tmp_path)
    assert not (tmp_path / STACK_FILE).exists()
    remove_stack(tmp_path)  # gone already: nothing to do
