"""Mirage (Gupta et al., ICLR 2024) on generated graph-classification sets: GCN and GIN trained on the full
training split vs on the distilled computation-tree sets.

Two settings of the ``motifs`` set (600 graphs, 4 motif classes, a distractor motif per graph, noise edges):
the default Barabási–Albert base graphs, and sparse Erdős–Rényi base graphs (mean degree 1.5, fewer noise edges),
whose computation trees repeat more, as in the molecules of the paper. 3 seeds (a new set, split, mining tie
order and initialisation per seed). Mirage with kdlab's defaults (2 hops, threshold 0.1, at most 256 tree-sets per
class); models: 2 layers of 64, Adam lr 0.01, batch 32, 100 epochs, the epoch of best validation accuracy kept
(the authors' protocol), for full and distilled training alike. Then a threshold sweep (accuracy against size)
and ablations of the sampling and of the exclusive filter on the first setting.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.bench_mirage [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import pandas as pd
import torch

from bench.common import markdown, mean_std, save
from kdlab.condense.mirage import coverage, distill_graphs, evaluate_mirage, train_on_mirage
from kdlab.data.graph_sets import load_graph_set
from kdlab.models.graph_classifiers import create_graph_classifier, graph_accuracy

SETTINGS = {
    "motifs, BA base (defaults)": {},
    "motifs, sparse ER base": {"base": "er", "base_degree": 1.5, "noise_edges": 0.05},
}
SWEEP = (0.05, 0.2, 0.3)  # besides the default 0.1
MODELS = ("gcn", "gin")


def splits(setting: dict[str, Any], seed: int, graphs: int) -> tuple[Any, Any, Any]:
    data = load_graph_set("motifs", seed=seed, graphs=graphs, **setting)
    return data.split("train"), data.split("val"), data.split("test")


def run_setting(setting: dict[str, Any], seeds: list[int], epochs: int, graphs: int) -> tuple[pd.DataFrame, dict]:
    """Rows of evaluate_mirage for every seed, and the set's facts (sizes, coverage, seconds) per seed."""
    rows, facts = [], []
    for seed in seeds:
        train, val, test = splits(setting, seed, graphs)
        mset = distill_graphs(train, seed=seed)
        comp = mset.compression()
        facts.append({**comp, "coverage": coverage(mset, test), "distill_s": mset.meta["seconds"],
                      "distinct_trees": mset.meta["distinct_trees"], "graphs_train": len(train)})
        rows.append(evaluate_mirage(train, test, mset, MODELS, epochs=epochs, seed=seed, val_set=val))
        print(rows[-1].round(3).to_string(), flush=True)
    return pd.concat(rows, ignore_index=True), {k: [f[k] for f in facts] for k in facts[0]}


def main_table(table: pd.DataFrame, facts: dict) -> list[dict]:
    out = []
    for model in MODELS:
        acc = {d: table[(table.model == model) & (table.data == d)].sort_values("seed")["test_acc"].tolist()
               for d in ("full", "mirage")}
        secs = {d: table[(table.model == model) & (table.data == d)]["seconds"].tolist() for d in ("full", "mirage")}
        gap = [100 * (f - m) for f, m in zip(acc["full"], acc["mirage"], strict=True)]
        out.append({"model": model.upper(), "full train split": mean_std(acc["full"]),
                    "Mirage set": mean_std(acc["mirage"]), "gap (points)": mean_std(gap, scale=1.0),
                    "train s full / Mirage": f"{statistics.mean(secs['full']):.1f} / "
                                             f"{statistics.mean(secs['mirage']):.1f}"})
    return out


def size_line(facts: dict) -> str:
    m = {k: statistics.mean(v) for k, v in facts.items()}
    return (f"Distilled set (mean of seeds): {m['tree_sets']:.0f} tree-sets over {m['trees']:.0f} distinct trees "
            f"({m['nodes_distilled']:.0f} tree nodes, {m['bytes_distilled'] / 1024:.1f} KiB) vs "
            f"{m['graphs_full']:.0f} training graphs ({m['nodes_full']:.0f} nodes, {m['bytes_full'] / 1024:.0f} KiB): "
            f"compression {mean_std(facts['compression'], scale=1.0)}x in bytes, "
            f"{mean_std([a / b for a, b in zip(facts['nodes_full'], facts['nodes_distilled'], strict=True)], 1.0)}"
            f"x in nodes; distillation {mean_std(facts['distill_s'], scale=1.0, digits=2)} s on one core. The "
            f"training graphs hold {m['distinct_trees']:.0f} distinct 2-hop computation trees; the distilled trees "
            f"are the computation trees of {mean_std(facts['coverage'])} % of the test graphs' nodes.")


def sweep(setting: dict[str, Any], seeds: list[int], epochs: int, graphs: int) -> list[dict]:
    rows = []
    for threshold in SWEEP:
        accs: dict[str, list[float]] = {m: [] for m in MODELS}
        comps, covs, sets = [], [], []
        for seed in seeds:
            train, val, test = splits(setting, seed, graphs)
            mset = distill_graphs(train, threshold=threshold, seed=seed)
            comps.append(mset.compression()["compression"])
            sets.append(mset.num_sets)
            covs.append(coverage(mset, test))
            for model in MODELS:
                net = create_graph_classifier(model, train.num_features, train.num_classes, seed=seed)
                train_on_mirage(net, mset, epochs=epochs, seed=seed, val=val)
                accs[model].append(graph_accuracy(net, test))
        rows.append({"threshold": threshold, "tree-sets": f"{statistics.mean(sets):.0f}", "compression (bytes)":
                     mean_std(comps, scale=1.0), "coverage of test nodes %": mean_std(covs),
                     **{f"{m.upper()} Mirage": mean_std(accs[m]) for m in MODELS}})
        print(rows[-1], flush=True)
    return rows


def ablations(setting: dict[str, Any], seeds: list[int], epochs: int, graphs: int) -> list[dict]:
    """GIN on Mirage sets: the released code's uniform draws, and the NCI1 script's exclusive filter."""
    variants = {"uniform draws (released code)": ({}, {"sampling": "uniform"}),
                "exclusive tree-sets (NCI1 script)": ({"exclusive": True}, {})}
    rows = []
    for label, (mine, fit) in variants.items():
        accs = []
        for seed in seeds:
            train, val, test = splits(setting, seed, graphs)
            mset = distill_graphs(train, seed=seed, **mine)
            net = create_graph_classifier("gin", train.num_features, train.num_classes, seed=seed)
            train_on_mirage(net, mset, epochs=epochs, seed=seed, val=val, **fit)
            accs.append(graph_accuracy(net, test))
        rows.append({"variant": label, "GIN Mirage": mean_std(accs)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 seed, 20 epochs, 200 graphs (a smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds, epochs, graphs = ([0], 20, 200) if args.quick else ([0, 1, 2], 100, 600)
    t0 = time.perf_counter()
    sections, data = [], {}
    for name, setting in SETTINGS.items():
        table, facts = run_setting(setting, seeds, epochs, graphs)
        data[name] = {"rows": table.to_dict("records"), "facts": facts}
        sections.append(f"#### {name}\n\n{markdown(main_table(table, facts))}\n\n{size_line(facts)}\n")
    first = next(iter(SETTINGS))
    sweep_rows = sweep(SETTINGS[first], seeds, epochs, graphs)
    ablation_rows = ablations(SETTINGS[first], seeds, epochs, graphs)
    data["sweep"], data["ablations"] = sweep_rows, ablation_rows
    sections.append(f"#### Threshold sweep ({first}; the default 0.1 is above)\n\n{markdown(sweep_rows)}\n")
    sections.append(f"#### Ablations ({first}, threshold 0.1)\n\n{markdown(ablation_rows)}\n")
    text = ("### Mirage: GCN / GIN trained on the full training split vs on the Mirage set\n\n"
            f"Test accuracy, mean ± std over {len(seeds)} seeds ({graphs} graphs per set, 70/10/20 % stratified "
            f"split, {epochs} epochs, best validation epoch). Gap = full minus Mirage, in points (target: within 5). "
            f"Total time {(time.perf_counter() - t0) / 60:.1f} min (1 thread).\n\n" + "\n".join(sections))
    save("mirage" + ("_quick" if args.quick else ""), text, data)


if __name__ == "__main__":
    main()
