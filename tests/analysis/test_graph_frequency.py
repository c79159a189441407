"""Normalised-Laplacian spectrum and graph-frequency energy of node signals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kdlab.analysis.graph_frequency import (
    compare_models,
    dirichlet_energy,
    high_frequency_similarity,
    node_signal,
    normalized_laplacian,
    spectral_energy,
    spectrum,
)
from kdlab.data.graphs import load_graph
from kdlab.errors import ConfigError, ShapeError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def graph():
    return load_graph("csbm", nodes=240, homophily=0.8, avg_degree=6.0, seed=0)


@pytest.mark.parametrize("name", ["csbm", "karate_club", "davis_southern_women"])
def test_eigenvalues_lie_in_0_2_and_sqrt_degree_vector_has_eigenvalue_0(name):
    g = load_graph(name, **({"nodes": 200} if name == "csbm" else {}))
    lap = normalized_laplacian(g)
    assert np.allclose(lap, lap.T)
    vals = np.linalg.eigvalsh(lap)
    assert vals.min() > -1e-10 and vals.max() < 2 + 1e-10
    deg = g.degrees().double().numpy()
    v = np.sqrt(deg)
    assert np.allclose(lap @ v, 0.0, atol=1e-12)  # L D^1/2 1 = 0
    assert spectrum(g).eigenvalues[0] == pytest.approx(0.0, abs=1e-10)


def test_bipartite_graph_reaches_eigenvalue_2_with_the_sign_flipping_signal():
    g = load_graph("davis_southern_women")  # connected and bipartite
    spec = spectrum(g)
    assert spec.eigenvalues[-1] == pytest.approx(2.0, abs=1e-10)
    flip = np.sqrt(g.degrees().double().numpy()) * np.where(g.y.numpy() == 0, 1.0, -1.0)
    se = spectral_energy(spec, flip, cutoff=1.0)
    assert se.high_fraction == pytest.approx(1.0)
    smooth = spectral_energy(spec, np.sqrt(g.degrees().double().numpy()), cutoff=1.0)
    assert smooth.high_fraction == pytest.approx(0.0, abs=1e-12)


def test_dirichlet_energy_equals_the_edge_sum(graph):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(graph.num_nodes, 3))
    deg = graph.degrees().double().numpy()
    s, d = graph.edge_index.numpy()
    zs = np.divide(z, np.sqrt(deg)[:, None], out=np.zeros_like(z), where=deg[:, None] > 0)
    by_edges = 0.5 * sum(np.sum((zs[i] - zs[j]) ** 2) for i, j in zip(s, d, strict=True))
    assert dirichlet_energy(normalized_laplacian(graph), z) == pytest.approx(by_edges, rel=1e-10)


def test_low_pass_filtering_lowers_dirichlet_energy_and_energies_add_up(graph):
    spec = spectrum(graph)
    z = np.random.default_rng(1).normal(size=(graph.num_nodes, 4))
    e0 = dirichlet_energy(spec.laplacian, z)
    low = spec.filter(z, 0.0, 0.8)
    assert dirichlet_energy(spec.laplacian, low) < e0
    # (I - L/2)^k, a polynomial low-pass filter, lowers it too, more with larger k
    p = np.eye(graph.num_nodes) - spec.laplacian / 2
    e1, e3 = dirichlet_energy(spec.laplacian, p @ z), dirichlet_energy(spec.laplacian, p @ p @ p @ z)
    assert e3 < e1 < e0
    se = spectral_energy(spec, z, cutoff=0.8)
    assert se.low + se.high == pytest.approx(float((z**2).sum()), rel=1e-10)  # Parseval
    assert float(se.binned(5).energy.sum()) == pytest.approx(se.low + se.high)
    # Dirichlet energy is the eigenvalue-weighted energy
    assert float((se.eigenvalues * se.energy).sum()) == pytest.approx(e0, rel=1e-9)


def test_labels_of_a_homophilous_graph_are_low_frequency_heterophilous_high(graph):
    onehot = np.eye(4)[graph.y.numpy()]
    homo = spectral_energy(spectrum(graph), onehot).high_fraction
    hetero_g = load_graph("csbm", nodes=240, homophily=0.05, avg_degree=6.0, seed=0)
    hetero = spectral_energy(spectrum(hetero_g), np.eye(4)[hetero_g.y.numpy()]).high_fraction
    assert homo < 0.25 < hetero


def test_compare_models_and_high_frequency_similarity(graph):
    spec = spectrum(graph)
    t = torch.randn(graph.num_nodes, 4, generator=torch.Generator().manual_seed(0))
    df = compare_models(spec, {"teacher": t, "copy": t.clone(), "shifted": t + 5.0}, reference="teacher")
    assert list(df.model) == ["teacher", "copy", "shifted"]
    assert np.allclose(df.hf_similarity, 1.0)  # probabilities ignore per-node logit shifts
    assert high_frequency_similarity(spec, node_signal(t), -node_signal(t)) == pytest.approx(-1.0)
    assert np.allclose(node_signal(t).sum(1), 1.0)
    with pytest.raises(ConfigError, match="reference"):
        compare_models(spec, {"a": t}, reference="b")
    with pytest.raises(ConfigError, match="kind"):
        node_signal(t, kind="probabilities")
    with pytest.raises(ShapeError):
        spec.coefficients(np.zeros((3, 2)))


def test_summarize_study_gives_mean_and_population_std_per_model_in_order():
    from kdlab.analysis.graph_frequency import summarize_study

    rows = pd.DataFrame({"seed": [0, 0, 1, 1], "model": ["GCN teacher", "MLP"] * 2, "test_acc": [0.9, 0.6, 0.8, 0.7],
                         "high_fraction": [0.1, 0.3, 0.1, 0.5]})
    out = summarize_study(rows)
    assert list(out.model) == ["GCN teacher", "MLP"] and list(out.seeds) == [2, 2]
    assert np.allclose(out.test_acc, [0.85, 0.65]) and np.allclose(out.test_acc_std, [0.05, 0.05])
    assert np.allclose(out.high_fraction_std, [0.0, 0.1])
