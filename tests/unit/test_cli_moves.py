"""`vm migrate`'s progress line: redrawn on a terminal, one line a second elsewhere."""

import io

from availlab.cli_moves import MiB, _Progress

SAMPLE = {"memory_total": 1024 * MiB, "memory_remaining": 256 * MiB, "memory_iteration": 2,
          "memory_bps": 300 * MiB, "memory_dirty_rate": 1200}


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_redrawn_line():
    out = Tty()
    p = _Progress("sql1", "h2", out)
    p(SAMPLE)
    p({**SAMPLE, "memory_remaining": 0, "memory_iteration": 3})
    p.end()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "sql1 -> h2:  75% iteration 2, 256 MiB of 1024 left, 300 MiB/s, dirtying 1200 pages/s" in text
    assert "100% iteration 3" in text


def test_a_log_gets_a_line_a_second_at_most():
    out = io.StringIO()
    p = _Progress("sql1", "h2", out)
    for _ in range(20):
        p(SAMPLE)  # 20 samples in the same second
    p.end()
    assert out.getvalue().count("\n") == 1 and "\r" not in out.getvalue()


def test_a_first_sample_without_totals_still_prints():
    out = io.StringIO()
    _Progress("sql1", "h2", out)({"memory_iteration": 0})
    assert "sql1 -> h2: iteration 0, 0 MiB of 0 left" in out.getvalue()


def test_the_end_of_the_watch_ends_the_line_before_the_result_is_said():
    out = Tty()
    p = _Progress("sql1", "h2", out)
    p(SAMPLE)
    p(None)  # live_migrate's watcher has stopped
    assert out.getvalue().endswith("\n")
    p.end()  # the CLI's own end afterwards adds nothing
    assert out.getvalue().count("\n") == 1


def test_migration_tuning_is_declared_once_for_the_cli_and_runbook_10():
    """Issue 29: the tuning was declared three times (events, runbook 10's model, CLI flags), and
    the CLI lacked three knobs. Every field of MigrationTuning is a `vm migrate` flag and a
    runbook-10 parameter with the same meaning; values given as flags reach the model."""
    from availlab import cli
    from availlab.events.tuning import MigrationTuning
    from availlab.scenarios.params import LiveMigration

    parser = cli.build_parser()
    args = parser.parse_args(["vm", "migrate", "sql1", "--to", "h2", "--parallel-connections", "4", "--compressed",
                              "--postcopy-after-s", "2.5", "--bandwidth", "64"])
    for name, f in MigrationTuning.model_fields.items():
        assert hasattr(args, name), f"vm migrate has no flag for {name}"
        ours = LiveMigration.model_fields.get("migration_timeout_s" if name == "timeout_s" else name)
        assert ours is not None and ours.description == f.description, name
    assert (args.parallel_connections, args.compressed, args.postcopy_after_s, args.bandwidth_mib_s) == (4, True, 2.5, 64)
    assert args.copy_storage is None and args.timeout_s is None  # unset: the model's default applies
