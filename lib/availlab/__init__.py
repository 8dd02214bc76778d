"""availlab: prove that SQL keeps running while its VM is migrated, backed up or moved."""

__version__ = "0.1.0"
