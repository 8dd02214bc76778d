"""Usage errors exit 2 with one clear line naming the bad field; they never touch the lab."""

import pytest

from availlab.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(list(argv)))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_unknown_verb_is_usage(capsys):
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


def test_bad_host_count(capsys):
    code, _, err = run(capsys, "--lab", "unit", "lab", "up", "--hosts", "17")
    assert code == 2 and "hosts: must be between 1 and 16" in err


def test_bad_topology_file_names_the_field(tmp_path, capsys):
    f = tmp_path / "t.yaml"
    f.write_text("name: t\nhosts:\n  - name: h1\n    cores: zero\n")
    code, _, err = run(capsys, "lab", "up", "--config", str(f))
    assert code == 2 and "hosts.0.cores" in err and "Traceback" not in err


def test_bad_vm_name_is_usage(capsys):
    code, _, err = run(capsys, "--lab", "nolab", "vm", "create", "Bad_Name", "--host", "h1")
    assert code == 2 and "vm name 'Bad_Name'" in err


def test_status_of_a_lab_that_is_not_up(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, out, _ = run(capsys, "--lab", "nolab", "lab", "status")
    assert code == 3 and "nolab: down" in out  # scripts tell down (3) from unhealthy (1) from healthy (0)


def test_status_exit_codes_tell_healthy_unhealthy_and_down():
    from availlab.cli import status_exit

    assert status_exit({"status": "up", "problems": []}) == 0
    assert status_exit({"status": "up", "problems": ["h2: libvirtd not running"]}) == 1
    assert status_exit({"status": "failed"}) == 1 and status_exit({"status": "down"}) == 3


def test_version(capsys):
    from availlab import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith(f"availlab {__version__}")


def test_dsn_needs_a_running_lab(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, _, err = run(capsys, "--lab", "nolab", "lab", "dsn", "sql1")
    assert code == 1 and "not up" in err


def test_run_lists_a_runbooks_parameters_and_reads_them_from_a_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, out, _ = run(capsys, "run", "runbooks/10-live-migration.ipynb", "--list-params")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and "migrations" in lines and "moves for ping-pong" in lines["migrations"]
    f = tmp_path / "p.yaml"
    f.write_text("migrations: 0\n")  # checked by the model like -p: refused before anything runs
    code, _, err = run(capsys, "--lab", "nolab", "run", "runbooks/10-live-migration.ipynb", "-f", str(f))
    assert code == 2 and "migrations: Input should be greater than or equal to 1" in err
    code, _, err = run(capsys, "--lab", "nolab", "run", "runbooks/10-live-migration.ipynb", "-f", str(f),
                       "-p", "migrations", "3")  # -p overrides the file, name by name: then the lab is next
    assert code == 2 and "migrations" not in err and "lab 'nolab' is not up" in err
    f.write_text("- not a mapping\n")
    code, _, err = run(capsys, "run", "runbooks/10-live-migration.ipynb", "-f", str(f))
    assert code == 2 and "a mapping of parameter names" in err


def test_global_options_may_follow_the_verb(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, out, _ = run(capsys, "lab", "status", "--lab", "after")
    assert code == 3 and "after: down" in out
    code, out, _ = run(capsys, "--lab", "before", "lab", "status")
    assert code == 3 and "before: down" in out
    from availlab.cli import build_parser

    args = build_parser().parse_args(["--lab", "x", "vm", "migrate", "sql1", "--to", "h2", "--quiet"])
    assert args.lab == "x" and args.quiet is True


def test_image_prune_is_a_dry_run_unless_applied_as_backups_prune(capsys, monkeypatch):
    from availlab.lab import imagecache

    asked = []
    monkeypatch.setattr(imagecache, "prune", lambda dry_run: asked.append(dry_run) or [])
    for argv, dry in ((["image", "prune"], True), (["image", "prune", "--dry-run"], True),
                      (["image", "prune", "--apply"], False)):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and asked[-1] is dry and out.startswith("would remove" if dry else "removed")


def test_lab_down_says_what_it_removed_as_json(capsys, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, out, _ = run(capsys, "lab", "down", "--lab", "nothing", "--json")
    assert code == 0 and json.loads(out) == {"lab": "nothing", "removed": []}


def test_every_option_and_argument_says_what_it_is():
    """Issue 32: help text for every option, as virsh and kubectl give it."""
    import argparse

    from availlab.cli import build_parser

    silent = []

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    walk(sp, [*path, name])
            elif not a.help and a.dest != "help":
                silent.append(f"{' '.join(path)} {a.option_strings or a.dest}")

    walk(build_parser(), ["availlab"])
    assert silent == []


def test_options_that_exclude_each_other_are_refused_as_such(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path))
    code, _, err = run(capsys, "backup", "sql1", "--incremental", "--differential")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run(capsys, "restore", "some-set", "--host", "h1", "--no-move-off")
    assert code == 2 and "only with --instant" in err


def test_bash_completion_is_written_from_the_parser_and_completes(capsys, tmp_path):
    import subprocess

    code, script, _ = run(capsys, "completion", "bash")
    (tmp_path / "c.sh").write_text(script)

    def complete(*words: str) -> str:
        argv = " ".join(words)
        r = subprocess.run(["bash", "-c", f"source {tmp_path / 'c.sh'}; COMP_WORDS=(availlab {argv}); "
                            f"COMP_CWORD={len(words)}; _availlab; echo ${{COMPREPLY[*]}}"],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    assert code == 0
    assert complete("vm", "mi") == "migrate" and complete("w") == "watch"
    assert complete("vm", "migrate", "sql1", "--ban") == "--bandwidth"  # MigrationTuning's flag, derived
    assert "--read-only" in complete("watch", "--re")


def test_run_out_puts_the_run_folder_where_ci_wants_it(capsys, tmp_path):
    """`run --out DIR`: the run folder under DIR/<runbook>/ (a notebook of one's own, empty, runs
    in seconds); junit.xml would be copied to --junit when the run writes one."""
    import json

    nb = tmp_path / "mine.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {"kernelspec": {"name": "availlab", "display_name": "x",
                                                                       "language": "python"}},
                              "nbformat": 4, "nbformat_minor": 5}))
    code, out, err = run(capsys, "run", str(nb), "--out", str(tmp_path / "ci"), "--json",
                         "--junit", str(tmp_path / "reports" / "junit.xml"))
    said = json.loads(out)
    assert said["run_folder"].startswith(str(tmp_path / "ci" / "mine")) and said["verdict"] is None, err
    assert (tmp_path / "ci" / "mine" / "latest").is_symlink()
    assert not (tmp_path / "reports").exists()  # no results, no junit.xml to copy


def test_every_command_is_logged_with_its_error_and_debug_prints_the_traceback(capsys, tmp_path, monkeypatch):
    """Issue 32: a log file as virsh's LIBVIRT_LOG_OUTPUTS or kubectl's -v give one; --debug as -d."""
    log = tmp_path / "cli.log"
    monkeypatch.setenv("AVAILLAB_LOG", str(log))
    monkeypatch.setenv("AVAILLAB_STATE", str(tmp_path / "state"))
    from availlab import cli
    from availlab.errors import LabError

    def broken(_args):
        from availlab.progress import step

        step("about to fail")
        raise LabError("the daemon went away")

    monkeypatch.setattr(cli, "cmd_lab_status", broken)
    code, _, err = run(capsys, "--lab", "logged", "lab", "status")
    assert code == 1 and err.rstrip().endswith(f"the daemon went away (details: {log})")
    assert "Traceback" not in err
    text = log.read_text()
    assert "availlab --lab logged lab status" in text and "about to fail" in text
    assert "exit 1: LabError: the daemon went away" in text and "Traceback" in text and "in broken" in text
    assert oct(log.stat().st_mode & 0o777) == "0o600"

    code, _, err = run(capsys, "lab", "status", "--debug")  # a global option, after the verb too
    assert code == 1 and "Traceback" in err and "in broken" in err and "details:" not in err
    import logging
    import logging.handlers

    ours = [h for h in logging.getLogger("availlab").handlers + logging.getLogger().handlers
            if isinstance(h, logging.handlers.RotatingFileHandler) or type(h) is logging.StreamHandler]
    assert not ours  # detached: the next command starts clean
    code, out, _ = run(capsys, "lab", "down", "--lab", "nothing", "--json")
    assert code == 0 and log.read_text().rstrip().endswith("exit 0")
    monkeypatch.delenv("AVAILLAB_LOG")
    monkeypatch.setenv("AVAILLAB_STATE", "relative")  # no log file then: the command's error, said once
    code, _, err = run(capsys, "lab", "down", "--lab", "x")
    assert code == 2 and err.strip() == "availlab: error: AVAILLAB_STATE: 'relative' is not an absolute path"


def test_a_refused_command_creates_no_state_root_and_the_first_lab_up_keeps_its_lines(capsys, tmp_path, monkeypatch):
    """The default log lives in the state root, which a command refused before anything exists
    must not create; its lines are held, and written once a command made the root."""
    from availlab import cli

    root = tmp_path / "state"
    monkeypatch.delenv("AVAILLAB_LOG")
    monkeypatch.setenv("AVAILLAB_STATE", str(root))
    code, _, err = run(capsys, "vm", "create", "Bad_Name", "--host", "h1")
    assert code == 2 and not root.exists() and "details:" not in err

    def makes_the_root(_args):
        from availlab.progress import step

        root.mkdir()
        step("the lab's directory made")
        return 0

    monkeypatch.setattr(cli, "cmd_lab_status", makes_the_root)
    assert run(capsys, "lab", "status")[0] == 0
    text = (root / ".logs" / "availlab.log").read_text()
    assert "availlab lab status" in text and "the lab's directory made" in text and "exit 0" in text
    assert "Bad_Name" not in text  # the refused command's lines were never written anywhere
