"""Runs: the experiment spec, running it, and (later) the run store and background executors."""
from __future__ import annotations
