"""The trainer's durable state without a server: offsets, lineage, checkpoint round trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from config.settings import GateSettings, TrainerSettings, TriggerSettings
from models import build_model, load_model
from models.training.batching import SeenIds
from models.training.policies import StatefulPolicy, StatelessPolicy
from models.training.step import Evaluation, StepResult
from models.training.triggered import TriggeredPolicy
from services.simulator.labeled import labeled_stream
from services.trainer.build import build_policy, gate_config
from services.trainer.state import (
    Checkpoint,
    OffsetLedger,
    StateError,
    Totals,
    decode_result,
    encode_result,
    window_of,
)

TS0 = 1_763_800_000_000


def test_ledger_resumes_after_the_last_message_done_with_even_if_not_trained() -> None:
    ledger = OffsetLedger()
    for offset, trained in ((0, True), (1, False), (2, True)):
        ledger.consumed(0, offset, trained=trained)
    ledger.consumed(1, 40, trained=False)
    assert ledger.next_offsets == {0: 3, 1: 41}
    assert ledger.n_trained == 2
    lineage = ledger.lineage("examples")
    assert [(r.partition, r.first, r.last) for r in lineage.ranges] == [(0, 0, 2)]
    assert lineage.n_examples == 2


def test_ledger_never_moves_backwards_and_resets_only_the_lineage() -> None:
    ledger = OffsetLedger({0: 10})
    ledger.consumed(0, 4, trained=True)  # a redelivery below the resume point
    assert ledger.next_offsets == {0: 10}
    ledger.reset_lineage()
    assert ledger.next_offsets == {0: 10}
    assert ledger.lineage("examples").ranges == () and ledger.n_trained == 0


def test_ledger_state_round_trips() -> None:
    ledger = OffsetLedger()
    ledger.consumed(3, 7, trained=True)
    ledger.consumed(3, 9, trained=True)
    again = OffsetLedger.from_state(ledger.to_state())
    assert again.next_offsets == {3: 10}
    assert again.lineage("t") == ledger.lineage("t")


def result(n: int, seed: int = 0) -> StepResult:
    rng = np.random.default_rng(seed)
    return StepResult(rng.random(n), rng.random(n), rng.random(n), rng.random(n),
                      rng.integers(0, 2, n).astype(np.float64))


def test_evaluation_window_round_trips_through_npz_without_pickle() -> None:
    ev = Evaluation()
    ev.add(result(5, 1))
    ev.add(result(3, 2))
    folded = window_of(ev)
    assert folded is not None
    back = decode_result(encode_result(folded))
    assert back is not None
    for name in ("champion_losses", "challenger_losses", "champion_scores",
                 "challenger_scores", "labels"):
        assert np.array_equal(getattr(back, name), getattr(ev.paired(), name))
    assert encode_result(None) == b"" and decode_result(b"") is None
    assert window_of(Evaluation()) is None


def test_logged_propensities_survive_the_checkpoint() -> None:
    ev = Evaluation()
    ev.add(result(3, 1))  # a batch of examples without propensities
    ev.add(replace(result(2, 2), propensities=np.array([0.05, 1.0])))
    back = decode_result(encode_result(window_of(ev)))
    assert back is not None and back.propensities is not None
    assert np.array_equal(back.propensities, [np.nan, np.nan, np.nan, 0.05, 1.0],
                          equal_nan=True)
    plain = decode_result(encode_result(result(2)))
    assert plain is not None and plain.propensities is None


def test_checkpoint_round_trips_every_field() -> None:
    model = build_model("logreg", hash_bits=8)
    examples = labeled_stream(20, seed=1, t0_ms=TS0)
    model.learn_many([e.features for e in examples], [e.label for e in examples])
    seen = SeenIds()
    seen.filter_new(examples, now_ms=5)
    ledger = OffsetLedger()
    ledger.consumed(0, 0, trained=True)
    cp = Checkpoint(
        mode="stateful", champion="ctr-v1.0", challenger=model.save(), ledger=ledger,
        seen=seen.to_state(), totals=Totals(batches=2, trained=20, duplicates=1),
        since_gate=20, evaluation=result(4), sanity=examples[:5], memory=examples[5:],
        memory_seen=15, saved_at=TS0,
    )
    back = Checkpoint.from_fields({k.encode(): v for k, v in cp.to_fields().items()})
    assert (back.mode, back.champion, back.totals, back.since_gate, back.memory_seen,
            back.saved_at) == ("stateful", "ctr-v1.0", cp.totals, 20, 15, TS0)
    assert back.sanity == examples[:5] and back.memory == examples[5:]
    assert back.seen == seen.to_state()
    assert back.ledger.next_offsets == {0: 1}
    feats = [e.features for e in examples]
    assert np.array_equal(load_model(back.challenger).predict_proba_many(feats),
                          model.predict_proba_many(feats))


def test_a_checkpoint_of_another_format_or_missing_fields_is_refused() -> None:
    cp = Checkpoint(mode="stateful", champion="ctr-v1.0", challenger=b"x",
                    ledger=OffsetLedger(), seen=[])
    fields = cp.to_fields()
    with pytest.raises(StateError, match="unreadable"):
        Checkpoint.from_fields({k: v for k, v in fields.items() if k != "seen"})
    fields["meta"] = fields["meta"].replace(b'"format":1', b'"format":99')
    with pytest.raises(StateError, match="format 99"):
        Checkpoint.from_fields(fields)


def test_policies_and_gate_are_built_from_settings() -> None:
    cfg = TrainerSettings(model="logreg", hash_bits=8, replay_ratio=0.5, per_user_cap=4,
                          stateless_retrain_examples=0, stateless_retrain_ms=1_000)
    champion = build_model("logreg", **cfg.model_hyperparams())
    stateful = build_policy("stateful", champion, cfg)
    assert isinstance(stateful, StatefulPolicy)
    assert stateful.per_user_cap == 4 and stateful.reservoir is not None
    stateless = build_policy("stateless", champion, cfg)
    assert isinstance(stateless, StatelessPolicy)
    assert stateless.retrain_every_examples is None and stateless.retrain_every_ms == 1_000
    assert gate_config(GateSettings(min_examples=7)).min_examples == 7


def test_triggered_policy_is_built_from_trigger_settings() -> None:
    cfg = TrainerSettings(model="logreg", hash_bits=8, per_user_cap=4, batch_size=64)
    champion = build_model("logreg", **cfg.model_hyperparams())
    triggers = TriggerSettings(volume_every_labels=0, time_every_ms=60_000,
                               drift_detector="page_hinkley", buffer_max=123, epochs=3)
    policy = build_policy("triggered", champion, cfg, triggers=triggers, min_evidence=77)
    assert isinstance(policy, TriggeredPolicy) and policy.mode == "stateful"
    assert policy.triggers.kinds == ("time", "performance", "drift")
    assert (policy.min_evidence, policy.buffer.maxlen, policy.epochs, policy.per_user_cap,
            policy.batch_size) == (77, 123, 3, 4, 64)


def test_a_checkpoint_keeps_the_policy_state_and_reads_states_written_without_it() -> None:
    state = {"held": [{"kind": "drift", "reason": "r"}], "counts": {"drift": 2},
             "trainings": 1, "total_trained": 900, "dropped": 0, "evidence": 300}
    cp = Checkpoint(mode="triggered", champion="ctr-v1.0", challenger=b"x",
                    ledger=OffsetLedger(), seen=[], policy_state=state)
    assert Checkpoint.from_fields(cp.to_fields()).policy_state == state
    fields = Checkpoint(mode="stateful", champion="ctr-v1.0", challenger=b"x",
                        ledger=OffsetLedger(), seen=[]).to_fields()
    fields["meta"] = fields["meta"].replace(b',"policy_state":{}', b"")
    assert b"policy_state" not in fields["meta"]
    assert Checkpoint.from_fields(fields).policy_state == {}
