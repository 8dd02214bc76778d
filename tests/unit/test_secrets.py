"""The DB password is stored 0600 and shown only on request."""

import os
import stat

from availlab.clients.sql import DSN
from availlab.lab import credentials
from availlab.vm.create import config_disk_bytes


def test_password_file_is_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    pw = credentials.ensure_db_password("t")
    assert pw.isalnum() and len(pw) == 24
    assert credentials.ensure_db_password("t") == pw
    f = tmp_path / "t" / "secrets" / "db-password"
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f.parent).st_mode) == 0o700
    assert credentials.scrub(f"login failed for {pw}", "t") == "login failed for ***"


def test_dsn_hides_the_password_unless_asked():
    d = DSN(server="10.213.0.101", password="s3cret")
    assert "s3cret" not in d.connection_string(show_secret=False)
    assert "PWD=s3cret;" in d.connection_string()
    assert "s3cret" not in repr(d)
    assert "DRIVER={PostgreSQL Unicode};SERVER=10.213.0.101;PORT=5432;" in d.connection_string()


def test_config_disk_is_one_padded_block():
    raw = config_disk_bytes("sql1", "10.213.0.101/24", "pw")
    assert len(raw) == 4096
    text = raw.rstrip(b"\0").decode()
    assert "AVAILLAB_ADDRESS=10.213.0.101/24" in text and "AVAILLAB_DB_PASSWORD=pw" in text


def test_the_guest_init_never_puts_the_password_on_a_command_line():
    """Any process in the guest can read another's /proc/PID/cmdline: the password goes to psql
    through its environment and to mariadb on its standard input (init.sh and each database's
    own script, lab/guest/db)."""
    import re
    from pathlib import Path

    guest = Path(__file__).resolve().parents[2] / "lab" / "guest"
    lines = [ln.strip() for f in [guest / "init.sh", *sorted((guest / "db").glob("*.sh"))]
             for ln in f.read_text().splitlines() if "AVAILLAB_DB_PASSWORD" in ln]
    on_argv = [ln for ln in lines if re.search(r"\b(psql|mariadb|mysql|su|runuser)\b.*\$AVAILLAB_DB_PASSWORD", ln)]
    assert not on_argv, on_argv
    assert any(ln.startswith("\\getenv pw AVAILLAB_DB_PASSWORD") for ln in lines)


def test_an_empty_password_file_left_by_a_crash_is_never_the_password(tmp_path, monkeypatch):
    """Issue 28: the file was written in place, so a crash at creation left it empty, and the
    empty string became the lab's password. It is written atomically now, and an empty one is
    made again (no VM can have used it)."""
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    f = tmp_path / "t" / "secrets" / "db-password"
    f.parent.mkdir(parents=True)
    f.write_text("")
    pw = credentials.ensure_db_password("t")
    assert pw and len(pw) == 24 and f.read_text().strip() == pw
    assert not [p for p in f.parent.iterdir() if p.name != "db-password"], "a temporary file was left"
