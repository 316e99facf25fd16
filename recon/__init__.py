"""Recon: multi-task learning with gradient manipulation and conflict-driven layer branching.

Shi et al., "Recon: Reducing Conflicting Gradients from the Root for Multi-Task
Learning", ICLR 2023, arXiv 2302.11289.
"""

__version__ = "0.1.0"
