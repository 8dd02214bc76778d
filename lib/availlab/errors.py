"""One exception base so callers (CLI, runbooks, tests) can catch everything availlab raises.

Subclasses name what failed; messages name the bad field, file, host or VM so a user can act
without reading a traceback. The CLI maps UsageError to exit code 2 and the rest to 1.
"""


class AvailLabError(Exception):
    """Base of every error availlab raises on purpose."""


class UsageError(AvailLabError):
    """Bad input from the user: a field, flag or name that cannot be right."""


class OwnershipError(UsageError):
    """A path or process is not proven to be the lab's (no marker, another lab's, not ours): refused."""


class TopologyError(UsageError):
    """The lab topology file is invalid; the message names the field."""


class ImageError(AvailLabError):
    """The guest image could not be built or is incomplete."""


class LabError(AvailLabError):
    """Provisioning or tearing down the local lab failed."""


class StateError(LabError):
    """A lab's state.json cannot be read as this version's state; the message names the field."""


class LabNotUpError(LabError):
    """An action needs a running lab and there is none."""


class HypervisorError(AvailLabError):
    """libvirt refused or failed an operation; wraps libvirt.libvirtError."""

    def __init__(self, message: str, *, code: int | None = None, host: str | None = None):
        super().__init__(message)
        self.code = code
        self.host = host


class DomainNotFoundError(HypervisorError):
    """The named VM is not defined on the host asked."""


class MigrationError(HypervisorError):
    """A live migration failed or was aborted."""


class CheckpointRefused(HypervisorError):
    """The host refuses a checkpoint description: its bitmap is not in the disk, or it describes
    another domain. It can never be a parent again (the host could not be asked: another error)."""


class VMError(AvailLabError):
    """A VM could not be created, started or did not become ready."""


class SQLError(AvailLabError):
    """A SQL statement run through ODBC failed; carries the SQLSTATE when the driver gave one."""

    def __init__(self, message: str, *, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class BackupError(AvailLabError):
    """A backup, replication or restore failed or was refused (corrupt file, broken chain)."""
