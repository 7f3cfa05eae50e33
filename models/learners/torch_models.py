"""Torch learners on hashed features: logistic regression, factorization machine, DeepFM.

All three share one network shape, ``_CTRNet``: a bias initialised to the prior CTR's logit, a
table of ``2**hash_bits`` rows holding per feature a linear weight and (FM, DeepFM) a
``factors``-dimensional latent vector, and (DeepFM) an MLP. Logistic regression is the table
with no latent vector; an FM adds the pairwise term ``sum_{i<j} <v_i, v_j> x_i x_j``; DeepFM
feeds the pooled embedding and the FM interaction vector to an MLP. Hashed, schema-free
features have no fixed field order to concatenate, hence pooling rather than DeepFM's
per-field concatenation.

Training touches only the table rows a batch uses: they are gathered into a small leaf tensor,
differentiated, and written back with Adagrad (per-coordinate step sizes, the usual choice for
sparse CTR features). No dense gradient over the whole table is ever formed, which keeps one
batch-512 update in the low milliseconds.

Threads: ``torch.set_num_threads`` is process-wide, so it is left to the entry point. Batch-512
updates are too small to gain from intra-op threads: on a 2-core machine one thread was as fast
as two with a steadier p90, so entry points should call ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own convention)

from models.errors import BlobError, HyperparameterError
from models.features.encoding import Batch, EncodedBatch, FeatureEncoder, FeatureSpec
from models.learners.base import Model, check_keep, check_labels, logit, pack_blob

# Pseudo-examples at the prior CTR that smooth the first batch's click rate (learn_many).
_BIAS_PSEUDO = 16.0


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


class _CTRNet(nn.Module):
    """Bias + hashed table (linear weight, latent vector) + optional MLP."""

    def __init__(self, n_rows: int, cfg: LogRegConfig, generator: torch.Generator | None) -> None:
        """``generator`` None: the table is left uninitialised (a load overwrites it)."""
        super().__init__()
        self.factors = cfg.factors if isinstance(cfg, FMConfig) else 0
        hidden = cfg.hidden if isinstance(cfg, DeepFMConfig) else ()
        self.bias = nn.Parameter(torch.tensor(logit(cfg.prior_ctr), dtype=torch.float32))
        if generator is None:
            table = torch.empty(n_rows, 1 + self.factors)
        else:
            table = torch.zeros(n_rows, 1 + self.factors)
        if isinstance(cfg, FMConfig) and generator is not None:
            table[:, 1:].normal_(0.0, cfg.init_std, generator=generator)
        # Updated by hand (sparse Adagrad on gathered rows), never through autograd.
        self.table = nn.Parameter(table, requires_grad=False)
        self.mlp: nn.Sequential | None = None
        if hidden:
            layers: list[nn.Module] = []
            width = 2 * self.factors
            for h in hidden:
                linear = nn.Linear(width, h)
                nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(linear.bias)
                layers += [linear, nn.ReLU()]
                width = h
            out = nn.Linear(width, 1)
            # A zero output layer makes a cold DeepFM score exactly the prior, like the others.
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.mlp = nn.Sequential(*layers, out)

    def logits(self, rows: torch.Tensor, inv: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """Logits of a batch whose entry ``(r, j)`` is row ``inv[r, j]`` of ``rows``."""
        e = rows[inv]  # (n, width, 1 + factors)
        out = self.bias + (e[..., 0] * val).sum(1)
        if self.factors:
            vx = e[..., 1:] * val.unsqueeze(-1)
            pooled = vx.sum(1)
            # Rendle's O(nk) identity: sum_{i<j} <v_i x_i, v_j x_j> = ½(‖Σ v x‖² − Σ ‖v x‖²).
            inter = 0.5 * (pooled * pooled - (vx * vx).sum(1))
            out = out + inter.sum(1)
            if self.mlp is not None:
                out = out + self.mlp(torch.cat([pooled, inter], 1)).squeeze(-1)
        return out


class TorchModel(Model):
    """Shared machinery: encoding, sparse Adagrad updates, save/load of tensors."""

    config_class: type[LogRegConfig] = LogRegConfig

    def __init__(self, config: LogRegConfig | None = None, spec: FeatureSpec | None = None,
                 *, _blank: bool = False) -> None:
        self.config = config or self.config_class()
        if type(self.config) is not self.config_class:
            raise HyperparameterError(f"{self.name} needs a {self.config_class.__name__}")
        self.encoder = FeatureEncoder(spec, seed=self.config.seed)
        # Per table column (linear weight, then the latent vector): its learning rate and L2.
        lr, l2 = self.config.lr, self.config.l2
        factor_lr, factor_l2 = lr, l2
        if isinstance(self.config, FMConfig):
            factor_lr = lr if self.config.factor_lr is None else self.config.factor_lr
            factor_l2 = l2 if self.config.factor_l2 is None else self.config.factor_l2
        factors = self.config.factors if isinstance(self.config, FMConfig) else 0
        self._column_lr = torch.tensor([lr] + [factor_lr] * factors)
        self._column_l2 = torch.tensor([l2] + [factor_l2] * factors)
        self._any_l2 = bool(l2 or (factors and factor_l2))
        if _blank:  # a load fills the table and the optimiser state: skip their initialisation
            self.net = _CTRNet(self.encoder.spec.n_rows, self.config, None)
            self._acc_table = torch.empty(0)
            self._acc_dense = {}
            return
        generator = torch.Generator().manual_seed(self.config.seed)
        self.net = _CTRNet(self.encoder.spec.n_rows, self.config, generator)
        init = self.config.accumulator_init
        self._acc_table = torch.full_like(self.net.table, init)
        self._acc_dense = {
            name: torch.full_like(p, init)
            for name, p in self.net.named_parameters()
            if p.requires_grad
        }

    @classmethod
    def from_hyperparams(cls, model_args: dict[str, Any], spec: FeatureSpec) -> TorchModel:
        """A fresh model from its config's keyword arguments and a feature spec."""
        return cls(cls.config_class(**model_args), spec)

    def predict_proba_many(self, batch: Batch) -> np.ndarray:
        """See ``Model.predict_proba_many``."""
        with torch.inference_mode():
            enc = self.encoder.encode(batch)
            idx, val = _tensors(enc)
            logits = self.net.logits(self.net.table, idx, val)
            return torch.sigmoid(logits).double().numpy()

    def learn_many(self, batch: Batch, labels: Sequence[int] | np.ndarray) -> float:
        """See ``Model.learn_many``; one optimiser step per ``minibatch`` examples, in order.
        Returns the mean loss of the steps, weighted by their sizes.

        A model whose bias never took a step (fresh, or just forgotten) sets it, after its
        first step, to the log-odds of that step's click rate (shrunk towards the prior by
        ``_BIAS_PSEUDO`` pseudo-examples, so 64 examples cannot throw it far): Adagrad
        moves one weight about ``2·lr·sqrt(steps)``, so a bias started at a 5 % prior took
        ~15,000 examples to reach a stream's 55 % (``bench replay``, MovieLens: log loss 1.68
        over the first 4,608)."""
        y = check_labels(batch, labels)
        fresh = bool((self._acc_dense["bias"] <= self.config.accumulator_init).all())
        size = self.config.minibatch
        total = 0.0
        for start in range(0, len(batch), size):
            part = batch[start:start + size]
            part_y = y[start:start + size]
            total += self._step(part, part_y) * len(part)
            if fresh:
                fresh = False
                with torch.no_grad():
                    clicks, n = float(part_y.sum()), len(part)
                    rate = (clicks + _BIAS_PSEUDO * self.config.prior_ctr) / (n + _BIAS_PSEUDO)
                    self.net.bias.fill_(logit(rate))
        return total / len(batch) if len(batch) else 0.0

    def _step(self, batch: Batch, labels: np.ndarray) -> float:
        y = torch.from_numpy(np.ascontiguousarray(labels)).float()
        enc = self.encoder.encode(batch, learn=True)
        idx, val = _tensors(enc)
        uniq, inv = torch.unique(idx, return_inverse=True)
        rows = self.net.table.detach()[uniq].requires_grad_()
        dense = {n: p for n, p in self.net.named_parameters() if p.requires_grad}
        loss = F.binary_cross_entropy_with_logits(self.net.logits(rows, inv, val), y)
        l2 = self._column_l2
        objective = loss + (l2 * rows.square()).sum() if self._any_l2 else loss
        grads = torch.autograd.grad(objective, [rows, *dense.values()])
        lr = self.config.lr
        with torch.no_grad():
            acc = self._acc_table[uniq] + grads[0].square()
            self._acc_table[uniq] = acc
            self.net.table[uniq] = rows.detach() - self._column_lr * grads[0] / acc.sqrt()
            for (name, p), g in zip(dense.items(), grads[1:], strict=True):
                acc_p = self._acc_dense[name]
                acc_p.add_(g.square())
                p.sub_(lr * g / acc_p.sqrt())
        return float(loss.detach())

    def forget(self, keep: float) -> None:
        """See ``Model.forget``: the table's weights shrink by ``keep``, latent vectors move
        to ``keep`` of themselves plus ``1 - keep`` of a fresh initialisation (all-zero
        vectors would never learn again), and every Adagrad accumulator restarts, so the next
        steps are full-size again; the bias and the MLP stay (shared by every example, they
        re-fit within a batch)."""
        keep = check_keep(keep)
        init = self.config.accumulator_init
        with torch.no_grad():
            self.net.table.mul_(keep)
            if self.net.factors and isinstance(self.config, FMConfig) and keep < 1.0:
                generator = torch.Generator().manual_seed(self.config.seed + 1)
                fresh = torch.empty_like(self.net.table[:, 1:])
                fresh.normal_(0.0, self.config.init_std, generator=generator)
                self.net.table[:, 1:].add_((1.0 - keep) * fresh)
            self._acc_table.fill_(init)
            for acc in self._acc_dense.values():
                acc.fill_(init)

    def embed_many(self, batch: Batch) -> np.ndarray:
        """The pooled latent vector ``sum_i v_i x_i`` of each dict (FM and DeepFM)."""
        if not self.net.factors:
            return super().embed_many(batch)
        with torch.inference_mode():
            idx, val = _tensors(self.encoder.encode(batch))
            e = self.net.table[idx][..., 1:]
            return (e * val.unsqueeze(-1)).sum(1).double().numpy()

    def clone(self) -> TorchModel:
        """See ``Model.clone``."""
        return copy.deepcopy(self)

    def describe(self) -> dict[str, Any]:
        """See ``Model.describe``."""
        return {
            "model": self.name,
            "hyperparams": {**_config_dict(self.config), **self.encoder.spec.to_dict()},
            "features": {
                "spec": self.encoder.spec.to_dict(),
                "numeric": self.encoder.numeric_summary(),
            },
        }

    def save(self) -> bytes:
        """See ``Model.save``: ``torch.save`` of tensors only, behind the JSON header."""
        tensors = dict(self.net.state_dict())
        tensors["acc.table"] = self._acc_table
        tensors.update({f"acc.{n}": t for n, t in self._acc_dense.items()})
        buf = io.BytesIO()
        torch.save(tensors, buf)
        header = {
            "model": self.name,
            "config": _config_dict(self.config),
            "encoder": self.encoder.to_state(),
            "payload": "torch",
        }
        return pack_blob(header, buf.getvalue())

    @classmethod
    def _from_blob(cls, header: dict[str, Any], payload: bytes) -> TorchModel:
        if header.get("payload") != "torch":
            raise BlobError(f"{cls.name} blob must carry a torch payload")
        try:
            tensors = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
            encoder = FeatureEncoder.from_state(header["encoder"])
            # Built blank: random init and optimiser state are overwritten here (they were
            # ~3/4 of a load's time, which serving pays on every swap).
            model = cls(cls.config_class(**header["config"]), encoder.spec, _blank=True)
            model.encoder = encoder
            model._acc_table = tensors.pop("acc.table")
            model._acc_dense = {
                n.removeprefix("acc."): tensors.pop(n) for n in list(tensors) if n[:4] == "acc."
            }
            model.net.load_state_dict(tensors, assign=True)
            _check_accumulators(model)
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise BlobError(f"cannot rebuild {cls.name} from blob: {exc}") from exc
        return model


class TorchLogReg(TorchModel):
    """Logistic regression on hashed features (``logreg``)."""

    name = "logreg"
    config_class = LogRegConfig


class TorchFM(TorchModel):
    """Factorization machine on hashed features (``fm``), the CTR default."""

    name = "fm"
    config_class = FMConfig


class TorchDeepFM(TorchModel):
    """DeepFM on hashed features (``deepfm``): FM plus an MLP over pooled embeddings."""

    name = "deepfm"
    config_class = DeepFMConfig


def _tensors(enc: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(enc.indices), torch.from_numpy(enc.values)


def _config_dict(cfg: LogRegConfig) -> dict[str, Any]:
    """The config as JSON-ready keyword arguments (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def _check_accumulators(model: TorchModel) -> None:
    """Refuse a blob whose optimiser state does not match its parameters."""
    params = dict(model.net.named_parameters())
    expected = {"table": params["table"].shape} | {
        n: p.shape for n, p in params.items() if p.requires_grad
    }
    got = {"table": model._acc_table.shape} | {n: t.shape for n, t in model._acc_dense.items()}
    if got != expected:
        raise ValueError(f"optimiser state {got} does not match parameters {expected}")
