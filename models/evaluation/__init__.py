"""How predictions are scored: log loss (written once, here), AUC and the tests on them."""

from models.evaluation.metrics import EPS, auc, log_loss, log_losses

__all__ = ["EPS", "auc", "log_loss", "log_losses"]
