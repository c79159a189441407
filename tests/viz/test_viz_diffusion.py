"""Diffusion figures: quality against NFE carries each model's numbers (a dropdown switches metric), images map
[-1, 1] to [0, 255] (NaN red), sample grids have one panel per model, trajectories and snapshots one frame per
step, neighbours their distances; every string from a run is escaped and NaN never breaks a figure."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

from kdlab.errors import ConfigError, ShapeError
from kdlab.viz.diffusion import (
    NAN_RGB,
    default_metric,
    diffusion_curves,
    method_card,
    model_keys,
    mosaic,
    neighbours_figure,
    quality_table,
    quality_vs_nfe,
    sample_grid,
    snapshot_figure,
    speed_bars,
    to_pixels,
    trajectory_figure,
)
from kdlab.viz.theme import STUDENT, TEACHER

EVIL = "<script>alert(1)</script>"


def quality(image: bool = False) -> pd.DataFrame:
    """A quality table as the job writes it: teacher with two samplers, the student at 1/2/4 steps."""
    metrics = ("fd", "accuracy") if image else ("swd", "mmd", "coverage")
    rows = []
    for sampler, off in (("ddim", 0.0), (EVIL, 0.5)):
        for k in (50, 1, 4):  # any row order
            rows.append({"who": "teacher", "sampler": sampler, "steps": k, "nfe": 2 * k, "s_per_sample": k / 1e4,
                         **{m: off + 1.0 / k + i for i, m in enumerate(metrics)}})
    for k in (1, 2, 4):
        rows.append({"who": "student", "sampler": "ddim", "steps": k, "nfe": k, "s_per_sample": k / 1e5,
                     **{m: 0.1 * k + i for i, m in enumerate(metrics)}})
    q = pd.DataFrame(rows)
    q.loc[(q["who"] == "student") & (q["steps"] == 2), metrics[0]] = np.nan  # a failed measurement
    return q


def points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 2))


def images(n: int, seed: int, hw: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, hw, hw))


def test_quality_vs_nfe_curves_carry_each_models_numbers():
    q = quality()
    assert default_metric(q) == "swd" and default_metric(quality(image=True)) == "fd"
    fig = quality_vs_nfe(q)
    assert [t.name for t in fig.data] == ["teacher · ddim", "teacher · &lt;script&gt;alert(1)&lt;/script&gt;",
                                          "student"]
    assert [t.line.color for t in fig.data] == [TEACHER, TEACHER, STUDENT] and fig.layout.xaxis.type == "log"
    ddim, _evil, student = fig.data
    assert list(ddim.x) == [2, 8, 100] and np.allclose(ddim.y, [1.0, 0.25, 0.02])  # sorted by NFE
    assert list(student.x) == [1, 2, 4] and np.isnan(student.y[1]) and np.allclose(student.y[[0, 2]], [0.1, 0.4])
    assert np.allclose(np.asarray(student.customdata)[:, 1], [1e-5, 2e-5, 4e-5])  # seconds per sample in the hover
    assert "s per sample" in student.hovertemplate and "lower is better" in fig.layout.yaxis.title.text
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["swd", "mmd", "coverage"] and menu.active == 0
    mmd = menu.buttons[1].args[0]["y"]
    assert np.allclose(mmd[2], [1.1, 1.2, 1.4]) and "higher is better" in menu.buttons[2].args[1]["yaxis.title.text"]
    assert np.allclose(quality_vs_nfe(q, "coverage").data[2].y, [2.1, 2.2, 2.4])
    page = pio.to_html(fig, include_plotlyjs=False)
    assert "<script>alert" not in page
    with pytest.raises(ConfigError, match="fd"):
        quality_vs_nfe(q, "fd")
    with pytest.raises(ConfigError, match="nfe"):
        quality_vs_nfe(q.drop(columns=["nfe"]))


def test_quality_table_rows_and_dashes_for_nan():
    fig = quality_table(quality(image=True))
    cells = fig.data[0].cells.values
    header = [h.replace("<b>", "").replace("</b>", "") for h in fig.data[0].header.values]
    assert header == ["model", "sampler", "steps", "NFE", "fd", "accuracy", "s / sample"]
    assert list(cells[0]) == ["teacher"] * 6 + ["student"] * 3
    assert list(cells[2][-3:]) == ["1", "2", "4"] and cells[4][-2] == "–"  # the NaN fd
    assert all("<script>" not in str(v) for col in cells for v in col)


def test_pixels_and_mosaic():
    x = np.array([[[[-1.0, 0.0], [1.0, 3.0]]]])  # (1, 1, 2, 2)
    px = to_pixels(x)
    assert px.shape == (1, 2, 2, 3) and px.dtype == np.uint8
    assert px[0, :, :, 0].tolist() == [[0, 128], [255, 255]] and (px[..., 0] == px[..., 2]).all()  # grey, clipped
    x[0, 0, 0, 1] = np.nan
    assert tuple(to_pixels(x)[0, 0, 1]) == NAN_RGB  # a NaN is red, never a plausible grey
    with pytest.raises(ShapeError, match="C 1 or 3"):
        to_pixels(np.zeros((2, 5, 4, 4)))
    imgs = np.stack([np.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # 3 tiles of 2x3
    m = mosaic(imgs, cols=2)
    assert m.shape == (2 * 2 + 1, 2 * 3 + 1, 3)
    assert m[0, 0, 0] == 0 and m[0, 4, 0] == 128 and m[3, 0, 0] == 255 and m[3, 4, 0] == 230  # empty cell grey


def test_sample_grid_points_one_panel_per_model_over_the_reference():
    labels = np.arange(50) % 8
    samples = {"student_2": points(50, 2), "teacher_50": points(50, 0), "student_1": points(50, 1),
               "labels": labels, "reference": points(80, 9)}
    assert [k for k, _, _ in model_keys(samples)] == ["teacher_50", "student_1", "student_2"]
    fig = sample_grid(samples)
    assert len(fig.data) == 6  # a reference and a sample trace per panel
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["teacher · 50 steps", "student · 1 step", "student · 2 steps"]
    ref, teacher = fig.data[0], fig.data[1]
    assert np.allclose(ref.x, samples["reference"][:, 0]) and ref.hoverinfo == "skip"
    assert np.allclose(teacher.x, samples["teacher_50"][:, 0]) and np.allclose(teacher.y, samples["teacher_50"][:, 1])
    assert len(set(teacher.marker.color)) == 8 and list(teacher.customdata) == labels.tolist()  # coloured by label
    assert fig.data[3].xaxis == "x2" and fig.data[5].xaxis == "x3"
    unlabelled = sample_grid({"teacher_4": points(5, 0), "student_1": points(5, 1), "labels": -np.ones(5)})
    assert set(unlabelled.data[1].marker.color) == {TEACHER} and set(unlabelled.data[3].marker.color) == {STUDENT}
    nan = points(5, 3)
    nan[0] = np.nan
    assert np.isnan(sample_grid({"teacher_1": nan}).data[1].x[0])  # a NaN point draws nothing, breaks nothing
    with pytest.raises(ConfigError, match="teacher_<k>"):
        sample_grid({"labels": labels})


def test_sample_grid_images_one_mosaic_per_model_teacher_first():
    samples = {"student_1": images(6, 1), "teacher_20": images(6, 0), "labels": np.arange(6)}
    fig = sample_grid(samples, per_row=3, rows=2)
    assert [t.type for t in fig.data] == ["image", "image"]
    assert [a.text for a in fig.layout.annotations] == ["teacher · 20 steps", "student · 1 step"]
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2 * 5 - 1, 3 * 5 - 1, 3)
    assert np.array_equal(z, mosaic(samples["teacher_20"], 3)) and np.array_equal(z[:4, :4], to_pixels(
        samples["teacher_20"][:1])[0])


def test_trajectory_animation_one_frame_per_step_student_holds_its_samples():
    teacher, student = np.stack([points(30, s) for s in range(6)]), np.stack([points(30, 10 + s) for s in range(3)])
    traj = {"teacher": teacher, "student": student, "teacher_t": np.array([999, 799, 599, 399, 199, -1]),
            "student_t": np.array([999, 499, -1])}
    fig = trajectory_figure(traj, labels=np.arange(30) % 4, reference=points(40, 99))
    assert len(fig.frames) == 6 and len(fig.layout.sliders[0].steps) == 6  # the teacher's 5 steps + the noise
    assert [f.name for f in fig.frames] == [str(i) for i in range(6)]
    for i, f in enumerate(fig.frames):
        assert list(f.traces) == [2, 3]
        assert np.allclose(f.data[0].x, teacher[i, :, 0]) and np.allclose(f.data[1].y, student[min(i, 2), :, 1])
    assert "teacher t=399 · student x₀" in fig.frames[3].layout.title.text
    assert np.allclose(fig.data[2].x, teacher[0, :, 0])  # the figure opens on the noise
    assert fig.layout.updatemenus[0].buttons[0].args[1]["frame"]["redraw"] is True  # the title follows the frame
    own = trajectory_figure({**traj, "labels": np.arange(30) % 3})  # coloured by the trajectories' own labels
    assert len(set(own.frames[0].data[0].marker.color)) == 3 and set(fig.frames[0].data[0].marker.color) != {TEACHER}
    assert set(trajectory_figure(traj).frames[0].data[1].marker.color) == {STUDENT}  # no labels: role colours
    teacher[2, 0] = np.nan
    assert np.isnan(trajectory_figure(traj).frames[2].data[0].x[0])  # NaN-safe


def test_trajectory_strips_for_images_rows_are_samples_columns_steps():
    teacher, student = np.stack([images(3, s) for s in range(21)]), np.stack([images(3, 30 + s) for s in range(3)])
    traj = {"teacher": teacher, "student": student, "teacher_t": np.r_[np.linspace(999, 0, 20).round(), -1],
            "student_t": np.array([999, 499, -1])}
    fig = trajectory_figure(traj, rows=2, max_columns=5)
    assert [t.type for t in fig.data] == ["image", "image"] and not fig.frames
    want = [f"t={int(traj['teacher_t'][j])}" for j in (0, 5, 10, 15)] + ["x₀"]  # 5 of 21 columns, evenly
    assert list(fig.layout.xaxis.ticktext) == want
    assert list(fig.layout.xaxis2.ticktext) == ["t=999", "t=499", "x₀"]
    z = np.asarray(fig.data[1].z)
    assert z.shape == (2 * 5 - 1, 3 * 5 - 1, 3)
    assert np.array_equal(z[5:9, 5:9], to_pixels(student[1, 1:2])[0])  # row 2 = sample 1, column 2 = step 1


def test_snapshots_one_frame_each_with_the_metric_marked():
    snaps = {"step": np.array([0, 100, 200, 300]), "samples": np.stack([points(20, s) for s in range(4)]),
             "metric": np.array([0.9, np.nan, 0.4, 0.2])}
    fig = snapshot_figure({**snaps, "labels": np.arange(20) % 5}, reference=points(30, 9), metric="swd")
    assert len(set(fig.frames[1].data[0].marker.color)) == 5  # coloured by the snapshots' own labels
    assert len(fig.frames) == 4 and [s.label for s in fig.layout.sliders[0].steps] == ["0", "100", "200", "300"]
    assert np.allclose(fig.data[2].x, [0, 100, 200, 300]) and np.isnan(fig.data[2].y[1])
    for i, f in enumerate(fig.frames):
        assert list(f.traces) == [1, 3] and np.allclose(f.data[0].x, snaps["samples"][i][:, 0])
        assert f.data[1].x[0] == snaps["step"][i]
    assert fig.frames[2].data[1].y[0] == 0.4 and "swd (lower is better)" == fig.layout.yaxis2.title.text
    img = snapshot_figure({"step": np.array([5, 10]), "samples": np.stack([images(4, 0), images(4, 1)]),
                           "metric": np.array([2.0, 1.0])}, metric="fd", per_row=2, rows=2)
    assert fig.layout.updatemenus and img.frames[1].data[0].type == "image" and len(img.frames) == 2
    assert np.array_equal(np.asarray(img.frames[1].data[0].z), mosaic(images(4, 1), 2))
    with pytest.raises(ShapeError, match="one of each"):
        snapshot_figure({"step": np.arange(3), "samples": np.zeros((2, 5, 2)), "metric": np.zeros(3)})


def test_neighbours_show_samples_their_nearest_images_and_distances():
    samples, near = images(3, 0, hw=6), np.stack([images(2, s, hw=6) for s in range(3)])
    dist = np.array([[0.5, 1.25], [0.0, np.nan], [2.0, 3.0]])
    fig = neighbours_figure({"samples": samples, "neighbours": near, "distances": dist})
    assert [a.text for a in fig.layout.annotations] == ["0.50", "1.25", "0.00", "–", "2.00", "3.00"]
    assert list(fig.layout.xaxis.ticktext) == ["sample", "#1", "#2"]
    z = np.asarray(fig.data[0].z)
    assert np.array_equal(z[:6, :6], to_pixels(samples[:1])[0])
    with pytest.raises(ShapeError, match="do not match"):
        neighbours_figure({"samples": samples, "neighbours": near[:2]})


def test_curves_method_card_and_speed():
    rows = [{"seq": i, "step": s, "epoch": np.nan, "kind": "step", "key": k, "value": 1.0 / s, "time": 0.0}
            for i, (s, k) in enumerate((s, k) for s in (1, 2, 3) for k in ("loss/total", "loss/kd"))]
    rows += [{"seq": 99, "step": 3, "epoch": np.nan, "kind": "eval", "key": "eval/swd", "value": 0.3, "time": 0.0}]
    fig = diffusion_curves(pd.DataFrame(rows))
    assert [t.name for t in fig.data] == ["loss/total", "loss/kd", "eval/swd"] and fig.data[2].xaxis == "x2"
    empty = diffusion_curves(pd.DataFrame(columns=["key", "value", "step"]))
    assert not empty.data and "no metrics yet" in empty.layout.annotations[0].text
    summary = {"method": EVIL, "method_params": {"rounds": 2}, "cite": "A & B 2024, <i>Paper</i>",
               "simplification": "one round " * 30, "data": "digits", "teacher": {"arch": "unet", "params": 12345},
               "samples_per_second": {"teacher_50": 100.0, "student_1": 4000.0, "student_4": 1000.0}}
    card = method_card(summary)
    values = " ".join(card.data[0].cells.values[1])
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (rounds=2)" in values and "A &amp; B 2024, &lt;i&gt;" in values
    assert "<script>alert" not in pio.to_html(card, include_plotlyjs=False) and "params 12,345" in values
    assert "<br>" in card.data[0].cells.values[1][2]  # the long simplification wrapped
    bars = speed_bars(summary)
    assert list(bars.data[0].y) == ["teacher · 50 steps", "student · 1 step", "student · 4 steps"]
    assert list(bars.data[0].x) == [100.0, 4000.0, 1000.0] and bars.layout.xaxis.rangemode == "tozero"
    assert "the student at 1 step samples 40× faster than the teacher at 50 steps" in bars.layout.title.text
    with pytest.raises(ConfigError, match="samples_per_second"):
        speed_bars({})
