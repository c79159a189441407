"""Helpers of the ui tests (imported by name: tests/ has no packages)."""
from __future__ import annotations


def tiny(name: str = "tiny", method: str = "kd") -> dict:
    return {"name": name, "device": "cpu", "data": {"name": "mnist5k", "params": {"n_train": 300}},
            "teacher": {"name": "mlp", "params": {"width": 16}, "optim": {"epochs": 1}},
            "student": {"name": "mlp", "params": {"width": 16}}, "method": {"name": method}, "optim": {"epochs": 3}}
