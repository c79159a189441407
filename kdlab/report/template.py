"""The report's jinja2 template (rendered with autoescape on: every string from a run is escaped; only the
plotly library and the figures' own HTML, marked safe by the builder, go in raw)."""
from __future__ import annotations

CSS = """
:root { --teacher: #7B3294; --student: #E66101; --muted: #666; --line: #e3e3e3; }
* { box-sizing: border-box; }
body { font-family: Inter, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0;
       color: #222; background: #fafafa; line-height: 1.45; }
header { background: #1f2430; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; font-weight: 600; }
header .meta { color: #c8ccd6; font-size: 13px; }
nav { padding: 8px 32px; background: #fff; border-bottom: 1px solid var(--line); font-size: 14px; }
nav a { margin-right: 14px; color: #1f5fa8; text-decoration: none; }
main { padding: 12px 32px 40px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 20px;
          margin: 16px 0; }
h2 { font-size: 19px; margin: 6px 0 10px 0; }
h3 { font-size: 16px; margin: 16px 0 6px 0; color: #333; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #f3f4f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { overflow-x: auto; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px; font-size: 12px;
      overflow-x: auto; max-height: 480px; }
.figure { margin: 10px 0 18px 0; }
.muted { color: var(--muted); font-size: 13px; }
.status { font-size: 12px; padding: 1px 6px; border-radius: 8px; background: #eef; }
ul.notes li { margin: 2px 0; }
details summary { cursor: pointer; color: #1f5fa8; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="kdlab {{ kdlab_version }}">
<title>{{ title }}</title>
<style>{{ css }}</style>
<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>
<script type="text/javascript" id="plotlyjs">{{ plotlyjs }}</script>
</head>
<body>
<header>
  <h1>{{ title }}</h1>
  <div class="meta">{{ runs|length }} run{{ '' if runs|length == 1 else 's' }} &middot; generated {{ generated }}
    &middot; kdlab {{ kdlab_version }} &middot; plotly {{ plotly_version }}</div>
</header>
<nav>
  <a href="#summary">Summary</a>
  {% if comparison %}<a href="#comparison">Comparison</a>{% endif %}
  {% for run in runs %}<a href="#run-{{ loop.index0 }}">{{ run.name }}</a>{% endfor %}
</nav>
<main>
<section id="summary">
  <h2>Summary</h2>
  <div class="summary">
  <table>
    <thead><tr>{% for col in summary_columns %}<th>{{ col }}</th>{% endfor %}</tr></thead>
    <tbody>
    {% for row in summary_rows %}
      <tr>{% for cell in row %}<td{% if cell.num %} class="num"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
    {% endfor %}
    </tbody>
  </table>
  </div>
  <p class="muted">Accuracies on the test split; agreement = fraction of test samples where the student's
    top-1 class equals the teacher's; epochs = epochs trained; train time = wall-clock seconds of the
    student's training; teacher train time = seconds the teacher took when it was trained (a cached
    teacher reports the run that trained it).</p>
</section>
{% if comparison %}
<section id="comparison">
  <h2>Comparison</h2>
  {% for fig in comparison %}<div class="figure">{{ fig.html }}</div>{% endfor %}
</section>
{% endif %}
{% for run in runs %}
<section id="run-{{ loop.index0 }}">
  <h2>{{ run.name }}{% if run.status %} <span class="status">{{ run.status }}</span>{% endif %}</h2>
  <div class="muted">source: {{ run.source }}</div>
  {% for fig in run.figures %}<div class="figure">{{ fig.html }}</div>{% endfor %}
  {% if not run.figures %}<p class="muted">No figures: the run has no metrics yet.</p>{% endif %}
  <h3>Notes</h3>
  {% if run.notes %}<ul class="notes">{% for note in run.notes %}<li>{{ note }}</li>{% endfor %}</ul>
  {% else %}<p class="muted">none</p>{% endif %}
  <h3>Spec</h3>
  <details open><summary>spec (YAML)</summary><pre>{{ run.spec_yaml }}</pre></details>
  <h3>Environment</h3>
  {% if run.environment %}
  <table>{% for k, v in run.environment %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
  {% else %}<p class="muted">not recorded</p>{% endif %}
</section>
{% endfor %}
</main>
</body>
</html>
"""
