"""report.html from its templates: every value escaped, sections shown by the evidence present."""

from __future__ import annotations

import re

from availlab.checks import SLO, check_run
from availlab.report import page as report_html
from availlab.report import render_html, results_document

from .test_checker import MIG, final, keys_of, steady


def _doc(**figures):
    h = steady()
    doc = results_document("10-live-migration", check_run(h + [final(keys_of(h))], MIG, SLO()),
                           {"vm": "<script>alert(1)</script>"}, SLO().model_dump(), 0.0, 1.0)
    doc["figures"].update(figures)
    return doc


def test_every_value_is_escaped_whatever_it_holds():
    evil = "<img src=x onerror=alert(1)>"
    doc = _doc(migrations=[{"vm": evil, "source": "h1", "target": "h2", "ok": True, "flags": [evil]}])
    doc["checks"][0]["message"] = evil
    page = render_html(doc, "T", "H", [evil])
    assert "<img src=x" not in page and "<script>alert" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_figures_read_as_in_results_json_and_sections_follow_the_evidence():
    doc = _doc()
    page = render_html(doc, "T", "H", ["results.json"])
    f = doc["figures"]
    for key in ("ops", "failed_ops", "longest_blackout_ms"):
        shown = re.search(rf"data-figure='{key}'>([^<]*)<", page).group(1)
        assert shown == (f"{f[key]:g}" if isinstance(f[key], float) else str(f[key]))
    assert "id='migrations'" in page and "<tr data-migration='0'>" in page
    assert "id='backups'" not in page and "id='faults'" not in page and "id='hostcpu'" not in page
    assert 'data-kind=\'outcome\'>' in page and page.count("class=\"plot\"") == 2


def test_a_scenario_can_register_its_own_section(monkeypatch, tmp_path):
    import jinja2

    (tmp_path / "sections").mkdir()
    (tmp_path / "sections" / "soak.html.j2").write_text("<h2>Soak</h2><p id='soak'>{{ f.soak_rounds|fmt }}</p>")
    loader = jinja2.ChoiceLoader([report_html._env.loader, jinja2.FileSystemLoader(str(tmp_path))])
    monkeypatch.setattr(report_html._env, "loader", loader)
    monkeypatch.setattr(report_html, "SECTIONS", list(report_html.SECTIONS))
    report_html.register(report_html.Section("soak", lambda f: "soak_rounds" in f))
    assert "<p id='soak'>3</p>" in render_html(_doc(soak_rounds=3), "T", "H", [])
    assert "id='soak'" not in render_html(_doc(), "T", "H", [])


def test_the_artifacts_render_in_a_notebook(tmp_path):
    """What the report cell of every runbook displays (a name clash once broke it in every run)."""
    from availlab.report import Artifacts

    a = Artifacts(tmp_path / "results.json", tmp_path / "junit.xml", tmp_path / "report <1>.html", "PASS", "PNG")
    out = a._repr_html_()
    assert "Verdict PASS" in out and "report &lt;1&gt;.html" in out


def test_figure_only_checks_are_junit_properties_and_never_weigh_in_the_verdict(tmp_path):
    """A CI must not count a figure (latency, the probe) as a passed test (issue 27, item 5)."""
    import xml.etree.ElementTree as ET

    from availlab.checks.core import Check, verdict_of
    from availlab.report import write_junit

    doc = _doc()
    figures = {c["name"] for c in doc["checks"] if not c["judged"]}
    assert figures == {"latency", "probe", "explained"}
    write_junit(tmp_path / "junit.xml", "10-live-migration", doc)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    cases = {c.get("name") for c in suite.findall("testcase")}
    assert cases and not cases & figures and int(suite.get("tests")) == len(cases)
    assert {p.get("name") for p in suite.findall("properties/property")} == {f"figure:{n}" for n in figures}
    assert verdict_of([Check("latency", "unknown", judged=False), Check("outcomes", True)]) == "PASS"


def test_junit_says_when_the_run_started_and_how_long_it_took(tmp_path):
    import xml.etree.ElementTree as ET

    from availlab.report import write_junit

    doc = {**_doc(), "started_at": "2026-12-06T17:00:00Z", "finished_at": "2026-12-06T17:01:30Z"}
    write_junit(tmp_path / "junit.xml", "10-live-migration", doc)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("timestamp"), suite.get("time")) == ("2026-12-06T17:00:00", "90")
    write_junit(tmp_path / "j2.xml", "10-live-migration", {k: v for k, v in doc.items() if k != "finished_at"})
    assert ET.parse(tmp_path / "j2.xml").getroot().get("time") is None  # no time said rather than a wrong one
