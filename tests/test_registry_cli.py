"""``feedgen definitions import|export`` and ``feedgen users ...`` as a user runs them (subprocesses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from feedgen.console.registry import LoginFailed, Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "definitions"


def feedgen(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.yaml"))}


def test_definitions_import_export_round_trip_through_the_cli(registry_url, tmp_path):
    first = feedgen("definitions", "import", str(EXAMPLES), "--registry", registry_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == f"{EXAMPLES}: 34 published, 0 unchanged"
    assert f"published lapsed-high-value version 1 ({EXAMPLES / 'segments.yaml'})" in first.stdout

    assert feedgen("definitions", "export", str(tmp_path / "a"), "--registry", registry_url).returncode == 0
    again = feedgen("definitions", "import", str(tmp_path / "a"), "--registry", registry_url)
    assert again.stdout.splitlines()[-1] == f"{tmp_path / 'a'}: 0 published, 34 unchanged"
    exported = feedgen("definitions", "export", str(tmp_path / "b"), "--registry", registry_url)
    assert exported.stdout.strip() == f"{tmp_path / 'b'}: 34 definitions exported"
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert feedgen("validate", str(tmp_path / "b")).returncode == 0


def test_the_registry_defaults_to_a_sqlite_file_under_the_root(tmp_path):
    done = feedgen("definitions", "import", str(EXAMPLES), "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "feedgen.db").is_file()


def test_an_invalid_folder_is_refused_with_file_and_line_and_nothing_is_imported(tmp_path):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "feeds.yaml").write_text("feeds:\n  - id: cheap\n    template: google_merchant_rss\n"
                                       "    where: {field: prise, lt: 100}\n")
    done = feedgen("definitions", "import", str(folder), "--root", str(tmp_path))
    assert done.returncode == 2
    assert f"{folder / 'feeds.yaml'}:4: feed 'cheap' where.field: unknown field 'prise'" in done.stderr
    listed = feedgen("definitions", "export", str(tmp_path / "out"), "--root", str(tmp_path))
    assert listed.stdout.strip().endswith("0 definitions exported")


def test_users_are_added_with_a_password_from_stdin_and_get_a_token_shown_once(registry_url):
    added = feedgen("users", "add", "ola", "--role", "publisher", "--password-stdin", "--registry", registry_url,
                    stdin="a long secret\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added ola (publisher)"
    token = feedgen("users", "token", "ola", "--registry", registry_url).stdout.strip()
    listed = feedgen("users", "list", "--registry", registry_url)
    assert listed.stdout.split() == ["ola", "publisher", "active", "1", "token"]
    assert token not in listed.stdout

    registry = Registry.open(registry_url)
    try:
        assert registry.accounts.authenticate_token(token).name == "ola"
        assert registry.accounts.login("ola", "a long secret", "127.0.0.1").role == "publisher"
        assert feedgen("users", "disable", "ola", "--registry", registry_url).returncode == 0
        with pytest.raises(LoginFailed):
            registry.accounts.authenticate_token(token)
        assert registry.audit(object_id="ola")[0].actor.startswith("os:")
    finally:
        registry.close()


def test_a_password_is_never_a_command_line_argument(tmp_path):
    done = feedgen("users", "add", "ola", "--role", "editor", "--password", "hunter22", "--root", str(tmp_path))
    assert done.returncode == 2 and "No such option '--password'" in done.stderr
    short = feedgen("users", "add", "ola", "--role", "editor", "--password-stdin", "--root", str(tmp_path),
                    stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
