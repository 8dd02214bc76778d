"""Users open the runbooks in JupyterLab (README, "Opening the runbooks in JupyterLab"): the real
server, started as the README says, serves every runbook and starts the kernel they name, whose
interpreter imports availlab. No lab: only loopback and a throw-away Jupyter runtime directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "availlab-test"


@pytest.fixture
def jupyterlab(tmp_path):
    lab = Path(sys.executable).with_name("jupyter-lab")
    if not lab.exists():
        pytest.skip("JupyterLab is the `jupyter` extra; `make setup` installs it")
    port = free_port()
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    log = open(tmp_path / "jupyterlab.log", "w")
    p = subprocess.Popen([str(lab), "--no-browser", "--ip", "127.0.0.1", "--port", str(port), "--allow-root",
                          f"--IdentityProvider.token={TOKEN}", "--notebook-dir", str(ROOT / "runbooks")],
                         stdout=log, stderr=subprocess.STDOUT, env=env)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy

    def api(path: str, method: str = "GET", body: dict | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {TOKEN}"})
        with opener.open(req, timeout=10) as r:
            text = r.read().decode()
            return json.loads(text) if text else None

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                api("status")
                break
            except (OSError, urllib.error.URLError):
                assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "jupyterlab.log").read_text()
                time.sleep(0.3)
        yield api
    finally:
        p.terminate()  # our own child, by handle
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def test_jupyterlab_serves_the_runbooks_and_starts_their_kernel(jupyterlab):
    listed = {c["name"] for c in jupyterlab("contents")["content"]}
    assert {p.name for p in (ROOT / "runbooks").glob("*.ipynb")} <= listed
    kernels = set(jupyterlab("kernelspecs")["kernelspecs"])
    named = {json.loads(p.read_text())["metadata"]["kernelspec"]["name"] for p in (ROOT / "runbooks").glob("*.ipynb")}
    assert named == {"availlab"} and named <= kernels
    k = jupyterlab("kernels", "POST", {"name": "availlab"})  # what opening a runbook does
    try:
        time.sleep(2)
        assert jupyterlab(f"kernels/{k['id']}")["execution_state"] != "dead"
        spec = jupyterlab("kernelspecs")["kernelspecs"]["availlab"]["spec"]
        # the kernel is the project's interpreter, which has availlab (a plain python3 may not);
        # papermill runs every runbook in this same kernel in the integration tests
        run = subprocess.run([spec["argv"][0], "-c", "import availlab, papermill, pyodbc, libvirt"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
    finally:
        jupyterlab(f"kernels/{k['id']}", "DELETE")
