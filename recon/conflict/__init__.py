"""Recon's layer-wise conflict analysis: layers, per-step cosine recording, S-conflict scores.

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning", ICLR 2023, arXiv 2302.11289.
"""

from recon.conflict.layers import Layer, shared_layers
from recon.conflict.recorder import COSINES_FILE, ConflictRecorder, cosines_from_gram
from recon.conflict.scores import (
    CosineRecord,
    check_threshold,
    check_window,
    conflict_scores,
    load_cosines,
    parse_window,
    permutation_file_name,
    read_permutation,
    settings_suffix,
    window_indices,
    write_permutation,
)

__all__ = [
    "COSINES_FILE",
    "ConflictRecorder",
    "CosineRecord",
    "Layer",
    "check_threshold",
    "check_window",
    "conflict_scores",
    "cosines_from_gram",
    "load_cosines",
    "parse_window",
    "permutation_file_name",
    "read_permutation",
    "settings_suffix",
    "shared_layers",
    "window_indices",
    "write_permutation",
]
