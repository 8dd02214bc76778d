"""environment.yml (conda users) must name the same packages as pyproject.toml (pip users)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in proj["dependencies"] + proj["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == pip_names, f"only in environment.yml: {conda - pip_names}; only in pyproject: {pip_names - conda}"


def test_layout_from_the_design_card():
    for p in ("README.md", "runbooks", "lib/availlab", "lab/default.yaml", "lab/guest/init.sh",
              "tests", "environment.yml", "pyproject.toml", "Makefile", ".ci/run"):
        assert (ROOT / p).exists(), p
    assert "make test" in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_the_package_reads_as_the_pipeline_in_modules_of_at_most_400_lines():
    pkg = ROOT / "lib" / "availlab"
    folders = {p.name for p in pkg.iterdir() if (p / "__init__.py").exists()}
    assert folders == {"lab", "vm", "clients", "events", "checks", "report", "scenarios"}
    long = {str(p.relative_to(pkg)): n for p in pkg.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
