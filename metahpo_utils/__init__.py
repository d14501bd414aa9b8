"""metahpo: meta-learning the hyperparameters of deep learning."""
from __future__ import annotations

__version__ = "0.1.0"

