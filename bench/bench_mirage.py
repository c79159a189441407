"""Mirage (Gupta et al., ICLR 2024) on generated graph-classification sets: GCN and GIN trained on the full
training split vs on the distilled computation-tree sets.

Four settings: the ``motifs`` set (600 graphs, 4 motif classes, a distractor motif per graph, noise edges) with its
default Barabási–Albert base graphs and with sparse Erdős–Rényi base graphs (mean degree 1.5, fewer noise edges);
the ``molecules`` set (600 molecule-like graphs, active = an N-C-C-O chain) with its defaults and with fewer
background heteroatoms (0.05 of the skeleton atoms instead of 0.1), whose computation trees repeat more. 3 seeds (a
new set, split, mining tie order and initialisation per seed). Mirage mines 2-hop trees at thresholds 0.05, 0.1
(kdlab's default) and 0.2, at most 256 tree-sets per class; reported are the default threshold and the one of best
validation accuracy per seed and model (the authors pick theirs on validation too; the test split never chooses).
Models: 2 layers of 64, Adam lr 0.003 (at 0.01, full-data training on ``molecules`` was erratic across seeds),
batch 32, 100 epochs, the epoch of best validation accuracy kept, for full and distilled training alike. A
diagnostic: the Mirage-trained models also scored on the test graphs cut down to their distilled trees
(``covered_samples``), which isolates the cost of test trees the distilled set never shows. Then ablations of the
sampling and of the exclusive filter on the first setting.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.bench_mirage [--quick] [--settings 0,2]
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pandas as pd
import torch

from bench.common import OUT, markdown, mean_std, save
from kdlab.condense.mirage import coverage, covered_samples, distill_graphs, train_on_mirage
from kdlab.data.graph_sets import load_graph_set
from kdlab.models.graph_classifiers import create_graph_classifier, graph_accuracy, train_graph_classifier

SETTINGS = {
    "motifs, BA base (defaults)": ("motifs", {}),
    "motifs, sparse ER base": ("motifs", {"base": "er", "base_degree": 1.5, "noise_edges": 0.05}),
    "molecules (defaults)": ("molecules", {}),
    "molecules, fewer heteroatoms": ("molecules", {"heteroatoms": 0.05}),
}
THRESHOLDS = (0.05, 0.1, 0.2)
DEFAULT = 0.1
MODELS = ("gcn", "gin")
LR = 0.003


def splits(name: str, params: dict[str, Any], seed: int, graphs: int) -> tuple[Any, Any, Any]:
    data = load_graph_set(name, seed=seed, graphs=graphs, **params)
    return data.split("train"), data.split("val"), data.split("test")


def run_seed(name: str, params: dict[str, Any], seed: int, epochs: int, graphs: int) -> tuple[list[dict], list[dict]]:
    """Rows (one per model and training data: full, or Mirage at each threshold) and the sets' facts."""
    train, val, test = splits(name, params, seed, graphs)
    sets = {t: distill_graphs(train, threshold=t, seed=seed) for t in THRESHOLDS}
    facts = [{"seed": seed, "threshold": t, **m.compression(), "coverage": coverage(m, test),
              "distill_s": m.meta["seconds"], "distinct_trees": m.meta["distinct_trees"]} for t, m in sets.items()]
    covered = {t: covered_samples(m, test) for t, m in sets.items()}
    rows = []
    for model in MODELS:
        for t in (None, *THRESHOLDS):
            net = create_graph_classifier(model, train.num_features, train.num_classes, seed=seed)
            t0 = time.perf_counter()
            if t is None:
                hist = train_graph_classifier(net, train, epochs=epochs, lr=LR, seed=seed, val=val)
            else:
                hist = train_on_mirage(net, sets[t], epochs=epochs, lr=LR, seed=seed, val=val)
            row = {"model": model, "data": "full" if t is None else "mirage", "threshold": t, "seed": seed,
                   "seconds": time.perf_counter() - t0, "val_acc": max(hist["val_acc"]),
                   "test_acc": graph_accuracy(net, test)}
            if t is not None:
                row.update(covered_acc=graph_accuracy(net, covered[t], test.y),
                           compression=sets[t].compression()["compression"])
            rows.append(row)
    return rows, facts


def chosen(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed and model, the Mirage row of best validation accuracy (ties: the larger threshold, a smaller set)."""
    mirage = table[table.data == "mirage"].sort_values(["seed", "model", "val_acc", "threshold"])
    return mirage.groupby(["seed", "model"]).tail(1)


def main_table(table: pd.DataFrame) -> list[dict]:
    pick = chosen(table)
    out = []
    for model in MODELS:
        mine = table[table.model == model].sort_values("seed")
        full = mine[mine.data == "full"]
        default = mine[(mine.data == "mirage") & (mine.threshold == DEFAULT)]
        best = pick[pick.model == model].sort_values("seed")
        gap = {k: [100 * (f - m) for f, m in zip(full.test_acc, v.test_acc, strict=True)]
               for k, v in (("default", default), ("val", best))}
        out.append({"model": model.upper(), "full train split": mean_std(full.test_acc.tolist()),
                    f"Mirage θ={DEFAULT:g}": mean_std(default.test_acc.tolist()),
                    "gap (points)": mean_std(gap["default"], scale=1.0),
                    "Mirage θ on val": mean_std(best.test_acc.tolist()),
                    "gap θ on val": mean_std(gap["val"], scale=1.0),
                    "θ chosen": ", ".join(f"{t:g}" for t in best.threshold),
                    "compression θ on val": mean_std(best.compression.tolist(), scale=1.0),
                    "train s full / Mirage": f"{full.seconds.mean():.1f} / {default.seconds.mean():.1f}"})
    return out


def size_line(facts: pd.DataFrame) -> str:
    f = facts[facts.threshold == DEFAULT]
    m = f.mean(numeric_only=True)
    return (f"Distilled set at θ={DEFAULT:g} (mean of seeds): {m['tree_sets']:.0f} tree-sets over {m['trees']:.0f} "
            f"distinct trees ({m['nodes_distilled']:.0f} tree nodes, {m['bytes_distilled'] / 1024:.1f} KiB) vs "
            f"{m['graphs_full']:.0f} training graphs ({m['nodes_full']:.0f} nodes, {m['bytes_full'] / 1024:.0f} KiB): "
            f"compression {mean_std(f.compression.tolist(), scale=1.0)}x in bytes, "
            f"{mean_std((f.nodes_full / f.nodes_distilled).tolist(), scale=1.0)}x in nodes; distillation "
            f"{mean_std(f.distill_s.tolist(), scale=1.0, digits=2)} s on one core. The training graphs hold "
            f"{m['distinct_trees']:.0f} distinct 2-hop computation trees; the distilled trees are the computation "
            f"trees of {mean_std(f.coverage.tolist())} % of the test graphs' nodes.")


def threshold_table(table: pd.DataFrame, facts: pd.DataFrame) -> list[dict]:
    rows = []
    for t in THRESHOLDS:
        f = facts[facts.threshold == t]
        mirage = table[(table.data == "mirage") & (table.threshold == t)]
        accs = {m: mirage[mirage.model == m] for m in MODELS}
        rows.append({"threshold": t, "tree-sets": f"{f.tree_sets.mean():.0f}", "trees": f"{f.trees.mean():.0f}",
                     "compression (bytes)": mean_std(f.compression.tolist(), scale=1.0),
                     "coverage of test nodes %": mean_std(f.coverage.tolist()),
                     **{f"{m.upper()} Mirage": mean_std(a.test_acc.tolist()) for m, a in accs.items()},
                     **{f"{m.upper()} on covered trees": mean_std(a.covered_acc.tolist()) for m, a in accs.items()}})
    return rows


def ablations(name: str, params: dict[str, Any], seeds: list[int], epochs: int, graphs: int) -> list[dict]:
    """GIN on Mirage sets at the default threshold: the released code's uniform draws, and the NCI1 script's
    exclusive filter."""
    variants = {"uniform draws (released code)": ({}, {"sampling": "uniform"}),
                "exclusive tree-sets (NCI1 script)": ({"exclusive": True}, {})}
    rows = []
    for label, (mine, fit) in variants.items():
        accs = []
        for seed in seeds:
            train, val, test = splits(name, params, seed, graphs)
            mset = distill_graphs(train, threshold=DEFAULT, seed=seed, **mine)
            net = create_graph_classifier("gin", train.num_features, train.num_classes, seed=seed)
            train_on_mirage(net, mset, epochs=epochs, lr=LR, seed=seed, val=val, **fit)
            accs.append(graph_accuracy(net, test))
        rows.append({"variant": label, "GIN Mirage": mean_std(accs)})
        print(rows[-1], flush=True)
    return rows


def summary_row(label: str, table: pd.DataFrame, facts: pd.DataFrame) -> dict:
    pick = chosen(table)
    out = {"setting": label, f"coverage θ={DEFAULT:g} %": mean_std(facts[facts.threshold == DEFAULT].coverage.tolist())}
    for model in MODELS:
        full = table[(table.model == model) & (table.data == "full")].sort_values("seed").test_acc.to_numpy()
        best = pick[pick.model == model].sort_values("seed").test_acc.to_numpy()
        gap = 100 * (full - best).mean()
        out[f"{model.upper()} gap θ on val"] = f"{gap:.1f}" + (" ✓" if gap <= 5 else "")
    return out


def verdict(label: str, table: pd.DataFrame, facts: pd.DataFrame) -> str:
    """One line per setting: target met or not per model, and whether the covered-trees score reaches full-data
    training (then the loss is the uncovered test trees) or not (then the distilled trees lack class evidence)."""
    pick, parts = chosen(table), []
    for model in MODELS:
        full = 100 * table[(table.model == model) & (table.data == "full")].test_acc.mean()
        best = pick[pick.model == model]
        mirage, covered = 100 * best.test_acc.mean(), 100 * best.covered_acc.mean()
        cause = ("most of the gap is test trees the set lacks" if full - covered <= 5 else
                 "the distilled trees themselves fall short")
        parts.append(f"{model.upper()} {'meets' if full - mirage <= 5 else 'misses'} the target (gap "
                     f"{full - mirage:.1f}); on covered trees {covered:.1f} vs full {full:.1f}: {cause}")
    coverage_pc = 100 * facts[facts.threshold == DEFAULT].coverage.mean()
    return f"- {label}, coverage {coverage_pc:.0f} %: " + "; ".join(parts) + "."


WHY = ("Why the gaps differ: a GNN trained on the Mirage set never sees the root embeddings of computation trees "
       "the set lacks, yet on a test graph those nodes still add to the readout. 'On covered trees' drops them (a "
       "diagnostic only: it uses the distilled tree list at test time). Where that score is close to full-data "
       "training, the gap is set by the share of uncovered test nodes, so it shrinks as trees repeat (fewer "
       "background heteroatoms, more coverage). Where it stays far below, the class itself is not in the frequent "
       "trees: in ``motifs`` noise edges and the motif's random attachment make the motif nodes' trees differ from "
       "graph to graph, so few reach the threshold. GCN's symmetric normalisation is only approximate on trees (their "
       "leaves have lost their degree), one more mismatch GIN does not have. On ``molecules`` at θ <= 0.1 the cap of "
       "256 tree-sets per class binds (with fewer heteroatoms at 0.2 too), so those sets coincide; validation ties go "
       "to the larger θ.")


def render(data: dict) -> str:
    """The markdown report of a run's ``data`` (as saved in results/mirage.json)."""
    meta = data["meta"]
    sections, summary, verdicts = [], [], []
    for label in meta["settings"]:
        table, facts = pd.DataFrame(data[label]["rows"]), pd.DataFrame(data[label]["facts"])
        summary.append(summary_row(label, table, facts))
        verdicts.append(verdict(label, table, facts))
        sections.append(f"#### {label}\n\n{markdown(main_table(table))}\n\n{size_line(facts)}\n\n"
                        f"By threshold (the Mirage-trained models also scored on the test graphs cut down to their "
                        f"distilled trees, a diagnostic):\n\n{markdown(threshold_table(table, facts))}\n")
    sections.append(f"#### Ablations ({meta['settings'][0]}, θ={DEFAULT:g})\n\n{markdown(data['ablations'])}\n")
    return ("### Mirage: GCN / GIN trained on the full training split vs on the Mirage set\n\n"
            f"Test accuracy, mean ± std over {len(meta['seeds'])} seeds ({meta['graphs']} graphs per set, 70/10/20 % "
            f"stratified split, {meta['epochs']} epochs, lr {LR:g}, best validation epoch). Gap = full minus Mirage, "
            f"in points (target: within 5, ✓). θ = the mining threshold (share of a class's graphs a tree-set must "
            f"occur in); 'θ on val' picks, per seed and model, the θ in {list(THRESHOLDS)} of best validation "
            f"accuracy. Total time {meta['minutes']:.1f} min (1 thread).\n\n{markdown(summary)}\n\n"
            + "\n".join(verdicts) + f"\n\n{WHY}\n\n" + "\n".join(sections))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 seed, 20 epochs, 200 graphs (a smoke run)")
    ap.add_argument("--settings", default="", help="comma-separated indices of SETTINGS to run (default: all)")
    ap.add_argument("--render", action="store_true", help="only rewrite results/mirage.md from results/mirage.json")
    args = ap.parse_args()
    if args.render:
        data = json.loads((OUT / "mirage.json").read_text())
        save("mirage", render(data), data)
        return
    torch.set_num_threads(1)
    seeds, epochs, graphs = ([0], 20, 200) if args.quick else ([0, 1, 2], 100, 600)
    names = list(SETTINGS)
    picked = [names[int(i)] for i in args.settings.split(",")] if args.settings else names
    t0 = time.perf_counter()
    data: dict[str, Any] = {}
    for label in picked:
        name, params = SETTINGS[label]
        rows, facts = [], []
        for seed in seeds:
            r, f = run_seed(name, params, seed, epochs, graphs)
            rows += r
            facts += f
            print(label, pd.DataFrame(r).round(3).to_string(), flush=True)
        data[label] = {"rows": rows, "facts": facts}
    data["ablations"] = ablations(*SETTINGS[picked[0]], seeds, epochs, graphs)
    data["meta"] = {"settings": picked, "seeds": seeds, "epochs": epochs, "graphs": graphs,
                    "minutes": (time.perf_counter() - t0) / 60}
    save("mirage" + ("_quick" if args.quick else ""), render(data), data)


if __name__ == "__main__":
    main()
