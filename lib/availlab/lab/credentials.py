"""The lab's database password: generated once per lab, stored 0600, never printed unless asked.

Alphanumeric only, so it needs no quoting in an ODBC connection string, a shell or SQL.
"""

from __future__ import annotations

import secrets
import string

from .. import paths
from ..errors import LabNotUpError
from .state import secrets_dir

DB_USER = "availlab"
DB_NAME = "availlab"
_ALPHABET = string.ascii_letters + string.digits


def ensure_db_password(lab: str) -> str:
    """The lab's password, made once. Written atomically, and an empty file (left by an older
    version's crash at creation) is never taken for the password: no VM can have used it."""
    path = secrets_dir(lab) / "db-password"
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    paths.private_dir(secrets_dir(lab))
    pw = "".join(secrets.choice(_ALPHABET) for _ in range(24))
    paths.write_atomic(path, pw + "\n")
    return pw


def db_password(lab: str) -> str:
    path = secrets_dir(lab) / "db-password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise LabNotUpError(f"lab {lab!r} has no database password yet; run `availlab lab up`") from None


def scrub(text: str, lab: str) -> str:
    """Remove the lab's password from text on its way out (errors, logs)."""
    try:
        pw = db_password(lab)
    except LabNotUpError:
        return text
    return text.replace(pw, "***") if pw else text
