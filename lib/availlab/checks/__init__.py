"""Checks: pure functions of the saved history and events -> a verdict PASS | FAIL | UNKNOWN.

The history is on disk before any checker runs. `core` holds the protocol (Check, Context,
`compose`, `judge`, the one verdict rule); `client` the checkers of what database clients saw;
one module per scenario composes them (`migration`, `dr`, `faults`, `tips`). Nothing in this
package touches a lab (an import-linter contract in pyproject.toml keeps it so).
"""

from .core import (
                   KINDS,
                   OUTCOME,
                   SLO,
                   TIMING,
                   UNKNOWN,
                   Check,
                   Checker,
                   Context,
                   Op,
                   Results,
                   checker,
                   compose,
                   judge,
                   merge,
                   pair_ops,
                   percentile,
                   slo,
                   verdict_of,
)
from .dr import check_dr_run
from .faults import check_matrix
from .migration import check_run
from .tips import check_dynamic

__all__ = ["KINDS", "OUTCOME", "SLO", "TIMING", "UNKNOWN", "Check", "Checker", "Context", "Op", "Results",
           "check_dr_run", "check_matrix", "check_dynamic", "check_run", "checker", "compose", "judge", "merge",
           "pair_ops", "percentile", "slo", "verdict_of"]
