"""Training machinery: the test-then-train step, policies, batching, replay, and the one
decision loop (``loop.Learner``) that the trainer service and the benchmarks drive."""

from models.training.loop import Alarm, Counts, Learner, Outcome
from models.training.step import Evaluation, LabeledExample, StepResult

__all__ = ["Alarm", "Counts", "Evaluation", "LabeledExample", "Learner", "Outcome",
           "StepResult"]
