"""Hyperparameters of the torch learners (``models.learners.torch_models``): logistic
regression, factorization machine and DeepFM, one frozen dataclass each, validated on
construction (``HyperparameterError`` names the field).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import HyperparameterError


@dataclass(frozen=True)
class LogRegConfig:
    """Hyperparameters of the torch logistic regression.

    Attributes:
        lr: Adagrad learning rate.
        l2: L2 penalty on the table rows a batch touches (lazy, sparse-friendly).
        prior_ctr: Click rate a cold model predicts; the bias starts at its logit.
        accumulator_init: Adagrad's initial squared-gradient sum (tiny: a coordinate's first
            step is then about ``lr`` whatever its gradient's scale).
        seed: Seeds every random initialisation.
        minibatch: Examples per optimiser step: ``learn_many`` on a micro-batch of 512 takes
            8 steps of 64 (one step per micro-batch learnt too little from each example).
    """

    lr: float = 0.1
    l2: float = 1e-5
    prior_ctr: float = 0.05
    # Near zero, as in torch's Adagrad: a larger start (TF uses 0.1) damps every step by
    # 1/sqrt(init) and on a synthetic CTR stream left the bias crawling towards the base rate.
    accumulator_init: float = 1e-6
    seed: int = 0
    minibatch: int = 64

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.l2 < 0 or not self.accumulator_init > 0:
            raise HyperparameterError("need lr > 0, l2 >= 0 and accumulator_init > 0")
        if self.minibatch < 1:
            raise HyperparameterError(f"minibatch: expected >= 1, got {self.minibatch}")
        if not 0.0 < self.prior_ctr < 1.0:
            raise HyperparameterError(f"prior_ctr: expected 0 < p < 1, got {self.prior_ctr}")


@dataclass(frozen=True)
class FMConfig(LogRegConfig):
    """Factorization machine: adds ``factors`` latent dimensions initialised N(0, init_std²).

    Attributes:
        factor_lr: Adagrad learning rate of the latent vectors; None: ``lr`` (the two groups
            are tuned apart: the pairwise term is a product of two of them).
        factor_l2: L2 penalty on the latent vectors a batch touches; None: ``l2``.
    """

    factors: int = 8
    init_std: float = 0.01
    factor_lr: float | None = None
    factor_l2: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factors < 1 or not self.init_std >= 0:
            raise HyperparameterError("need factors >= 1 and init_std >= 0")
        if (self.factor_lr is not None and not self.factor_lr > 0) or (
                self.factor_l2 is not None and self.factor_l2 < 0):
            raise HyperparameterError("need factor_lr > 0 and factor_l2 >= 0 (or None)")


@dataclass(frozen=True)
class DeepFMConfig(FMConfig):
    """DeepFM: adds an MLP with layers of widths ``hidden`` (ReLU) over pooled embeddings."""

    lr: float = 0.05  # the dense MLP weights are less stable than the sparse table at 0.1
    hidden: tuple[int, ...] = (64, 32)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        super().__post_init__()
        if not self.hidden or min(self.hidden) < 1:
            raise HyperparameterError(f"hidden: expected positive widths, got {self.hidden}")
