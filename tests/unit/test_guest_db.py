"""A database with a lab image is declared in its dialect and in one guest script,
lab/guest/db/<name>.sh: the image build finds which one its packages installed, configures it
and installs it as the guest's db.sh, which the guest's init sources (the images themselves
boot in tests/integration: runbook 10 on PostgreSQL, test_mariadb on MariaDB)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from availlab.dialects import DIALECTS, LAB_IMAGES, host_packages

GUEST = Path(__file__).resolve().parents[2] / "lab" / "guest"
FUNCTIONS = ("db_installed", "db_customize", "db_run", "db_start", "db_stop")


def _sh(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", LAB_IMAGES)
def test_each_lab_image_has_its_guest_script_with_every_function(name):
    script = GUEST / "db" / f"{name}.sh"
    r = _sh('. "$1"; echo "$DATABASE"; for f in ' + " ".join(FUNCTIONS) + '; do command -v "$f"; done', str(script))
    assert r.returncode == 0 and r.stdout.split() == [name, *FUNCTIONS], r.stderr


def test_every_guest_script_is_a_lab_image_and_only_sqlservers_has_none():
    assert sorted(p.stem for p in (GUEST / "db").glob("*.sh")) == sorted(LAB_IMAGES)
    assert [n for n in DIALECTS if n not in LAB_IMAGES] == ["sqlserver"]


def _image_root(tmp_path: Path, database: str) -> Path:
    """An image root as mmdebstrap leaves it before the hook, as far as the hook looks."""
    root = tmp_path / database
    (root / "sbin").mkdir(parents=True)
    (root / "etc").mkdir()
    if database == "postgresql":
        (root / "etc/postgresql/15/main").mkdir(parents=True)
        (root / "etc/postgresql/15/main/pg_hba.conf").write_text("local all all peer\n")
    else:
        (root / "usr/sbin").mkdir(parents=True)
        (root / "usr/sbin/mariadbd").write_text("#!/bin/sh\n")
        (root / "usr/sbin/mariadbd").chmod(0o755)
        (root / "etc/mysql/mariadb.conf.d").mkdir(parents=True)
        (root / "var/lib/mysql/mysql").mkdir(parents=True)  # system tables there: no chroot needed
    return root


@pytest.mark.parametrize("name", LAB_IMAGES)
def test_the_build_hook_installs_and_configures_the_database_the_image_holds(tmp_path, name):
    root = _image_root(tmp_path, name)
    r = subprocess.run(["sh", str(GUEST / "hooks" / "customize01-availlab.sh"), str(root)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (root / "usr/local/lib/availlab/db.sh").read_text() == (GUEST / "db" / f"{name}.sh").read_text()
    assert (root / "sbin/availlab-init").stat().st_mode & 0o111
    if name == "postgresql":
        assert "listen_addresses = '*'" in (root / "etc/postgresql/15/main/conf.d/availlab.conf").read_text()
        assert "scram-sha-256" in (root / "etc/postgresql/15/main/pg_hba.conf").read_text()
    else:
        assert "bind-address = 0.0.0.0" in (root / "etc/mysql/mariadb.conf.d/60-availlab.cnf").read_text()


def test_this_machines_packages_come_from_the_dialects():
    setup = (GUEST.parent / "setup.sh").read_text()
    assert "host_packages" in setup
    assert not [p for p in host_packages() if p in setup], "declared in dialects.py, not again in setup.sh"
    assert {"odbc-postgresql", "odbc-mariadb", "postgresql-client", "mariadb-client"} <= set(host_packages())
