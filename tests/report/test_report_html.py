from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from plotly.offline import get_plotlyjs

from kdlab.errors import ConfigError
from kdlab.report import build, load_run, report_figures, summary_table

XSS = "<script>alert(1)</script>"
LIB_OPEN = '<script type="text/javascript" id="plotlyjs">'


class _Tags(HTMLParser):
    """Collects every start tag and its attributes (script bodies are data, not tags)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


def _without_library(html: str) -> str:
    """The document with the plotly.js library body cut out (its minified source mentions URLs as data)."""
    start = html.index(LIB_OPEN) + len(LIB_OPEN)
    end = html.index("</script>", start)
    return html[:start] + html[end:]


@pytest.fixture(scope="module")
def one_run_html(tiny_run_with_predictions):
    return build(tiny_run_with_predictions, title="one run")


def test_report_opens_offline(one_run_html):
    html = one_run_html
    rest = _without_library(html)
    assert not re.search(r'src\s*=\s*["\']?\s*(https?:)?//', rest, re.I)
    assert not re.search(r'href\s*=\s*["\']?\s*(https?:)?//', rest, re.I)
    assert 'src="http' not in html and "cdn." not in rest and "http://" not in rest and "https://" not in rest
    tags = _parse(html).tags
    assert not [t for t, _ in tags if t in ("link", "iframe", "img", "object", "embed", "base")]
    assert not [a for t, a in tags if t == "script" and "src" in a]  # every script is inline
    for _t, attrs in tags:
        for k in ("src", "href", "action", "data"):
            v = attrs.get(k)
            assert v is None or v.startswith("#"), (k, v)
    assert "MathJax.js" not in rest and "mathjax" not in rest.replace("MathJaxConfig: 'local'", "").lower()


def test_plotly_js_is_inlined_exactly_once(one_run_html, tiny_run_with_predictions):
    html = one_run_html
    js = get_plotlyjs()
    assert html.count(js) == 1
    assert html.count("plotly.js v") == 1  # the library's banner
    assert html.count(LIB_OPEN) == 1
    two = build([tiny_run_with_predictions, tiny_run_with_predictions])
    assert two.count(js) == 1 and two.count("plotly.js v") == 1


def test_every_built_figure_is_embedded_once(one_run_html, tiny_run_with_predictions):
    figs = report_figures(tiny_run_with_predictions)
    n = len(figs)
    assert n == 4  # curves, per-class gap, confusion, calibration
    assert one_run_html.count('class="plotly-graph-div"') == n
    assert one_run_html.count("Plotly.newPlot(") == n
    for f in figs.all():
        assert one_run_html.count(f'id="{f.id}"') == 1
    two_runs = [tiny_run_with_predictions, json.loads((tiny_run_with_predictions / "results.json").read_text())]
    figs2 = report_figures(two_runs)
    html2 = build(two_runs)
    assert len(figs2.comparison) == 3 and len(figs2.per_run[1]) == 1  # the dict has no predictions
    assert html2.count('class="plotly-graph-div"') == html2.count("Plotly.newPlot(") == len(figs2)


def test_one_run_report_is_under_6_mb(one_run_html):
    assert len(one_run_html.encode("utf-8")) < 6 * 2**20


def test_user_strings_are_escaped(tiny_run_dir):
    result = json.loads((tiny_run_dir / "results.json").read_text())
    result["spec"]["name"] = XSS
    result["spec"]["tags"] = ['"><img src=x onerror=alert(2)>']
    result["notes"] = [f"note {XSS}", "a & b"]
    result["environment"]["device"] = "<b>gpu</b>"
    html = build({XSS: result}, title=f"title {XSS}")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>gpu</b>" not in html and "a &amp; b" in html
    parsed = _parse(_without_library(html))
    assert sum(1 for t, _ in parsed.tags if t == "script") == 2 + len(report_figures({XSS: result}))
    assert XSS in "".join(parsed.text)  # shown as text


def test_report_content_matches_the_results(one_run_html, tiny_run_with_predictions):
    results = json.loads((tiny_run_with_predictions / "results.json").read_text())
    run = load_run(tiny_run_with_predictions)
    table = summary_table([run])
    row = table.iloc[0]
    assert row["student test acc"] == results["student"]["test/acc"]
    assert row["teacher test acc"] == results["teacher"]["test/acc"]
    assert row["agreement"] == results["student"]["test/agreement"]
    assert row["student - teacher"] == pytest.approx(results["student"]["test/acc"] - results["teacher"]["test/acc"])
    assert row["epochs"] == 2 and row["method"] == "kd"
    html = one_run_html
    assert f"{results['student']['test/acc']:.4f}" in html
    assert "temperature: 4.0" in html  # the spec, as YAML
    assert f"torch</th><td>{results['environment']['torch']}" in html
    for section in ("Summary", "Spec", "Environment", "Notes"):
        assert f">{section}<" in html


def test_predictions_reproduce_the_recorded_test_accuracies(tiny_run_with_predictions):
    results = json.loads((tiny_run_with_predictions / "results.json").read_text())
    p = load_run(tiny_run_with_predictions).predictions
    assert p is not None and p.student.shape == (360, 10) and p.class_names == [str(i) for i in range(10)]
    assert (p.student.argmax(1) == p.labels).mean() == pytest.approx(results["student"]["test/acc"], abs=1e-12)
    assert (p.teacher.argmax(1) == p.labels).mean() == pytest.approx(results["teacher"]["test/acc"], abs=1e-12)


def test_run_experiment_writes_the_predictions_the_report_would_compute(experiment_dir, tiny_run_with_predictions):
    written = load_run(experiment_dir).predictions
    computed = load_run(tiny_run_with_predictions).predictions
    assert written is not None and written.class_names == computed.class_names
    assert (written.labels == computed.labels).all()
    assert written.student == pytest.approx(computed.student, abs=1e-5)
    assert written.teacher == pytest.approx(computed.teacher, abs=1e-5)


def test_build_writes_the_file(tmp_path, tiny_run_dir):
    out = tmp_path / "r.html"
    html = build(tiny_run_dir, out)
    assert out.read_text(encoding="utf-8") == html
    assert html.count("Plotly.newPlot(") == 1  # no predictions: training curves only
    with pytest.raises(ConfigError, match="does not exist"):  # a folder is never created silently
        build(tiny_run_dir, tmp_path / "sub" / "r.html")
    assert not (tmp_path / "sub").exists()
