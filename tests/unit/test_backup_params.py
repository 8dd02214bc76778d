"""Backup parameters are refused before anything is asked of the lab."""

from types import SimpleNamespace

import pytest

from availlab.errors import UsageError
from availlab.events.backup import backup


@pytest.mark.parametrize("kw, match", [
    ({"copy_mib_s": -1}, "copy_mib_s: must be a whole number"),
    ({"copy_mib_s": 2.5}, "copy_mib_s: must be a whole number"),
    ({"copy_mib_s": True}, "copy_mib_s: must be a whole number"),
    ({"incremental": True, "differential": True}, "incremental, differential: pick one"),
])
def test_bad_backup_parameters_are_refused_before_the_lab_is_asked(kw, match):
    untouchable = SimpleNamespace()  # any attribute read (provider, hosts) would raise AttributeError
    with pytest.raises(UsageError, match=match):
        backup(untouchable, "sql1", **kw)


def test_runbook_20_and_the_cli_default_to_the_library_cap():
    from availlab.events.backup import COPY_MIB_S
    from availlab.scenarios.params import BackupRestore

    assert BackupRestore.model_fields["copy_mib_s"].default == COPY_MIB_S
