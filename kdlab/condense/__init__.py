"""Dataset distillation: condense a training set into a few synthetic images per class, and evaluate them.

``condense(train, method="dm", ipc=10)`` returns a ``SyntheticSet`` (a torch Dataset, saved as .npz,
exported as PNG grids); ``evaluate_sets(sets, test)`` trains fresh networks on it by the field's protocol.
"""
from __future__ import annotations

from kdlab.condense import (  # noqa: F401  (importing a method's module registers it)
    committee_voting,
    infer,
    nrr,
    quantization,
    self_supervised,
    trajectory_matching,
)
from kdlab.condense.distill import Condensation, CondenseConfig, channel_stats, condense
from kdlab.condense.evaluate import CONVNET_PARAMS, CROSS_ARCHITECTURES, EvalConfig, evaluate_sets, summarize
from kdlab.condense.methods import CONDENSERS, Condensed, method_names, register_condenser
from kdlab.condense.neighbours import nearest_real
from kdlab.condense.synthetic import SyntheticSet
from kdlab.condense.transfer_eval import TransferConfig, evaluate_transfer, transfer_targets

METHODS = method_names()

__all__ = ["CONDENSERS", "CONVNET_PARAMS", "CROSS_ARCHITECTURES", "METHODS", "Condensation", "CondenseConfig",
           "Condensed", "EvalConfig", "SyntheticSet", "channel_stats", "condense", "evaluate_sets", "method_names",
           "TransferConfig", "evaluate_transfer", "nearest_real", "register_condenser", "summarize", "transfer_targets"]
