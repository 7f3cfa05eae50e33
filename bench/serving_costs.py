"""Where a predict request's CPU goes: the serving process by thread, and each step in process.

``bench serving`` measures the server's CPU per request from outside. These two splits say
which part of it the route's own steps are, and which part runs beside them:

- ``cpu_by_thread(pid)`` (``services.ops.cpu``): a process's CPU time so far, grouped into its
  main thread (the event
  loop: HTTP, FastAPI, the route), librdkafka's threads (named ``rdk:…``: batching, the broker
  protocol, I/O) and the rest (the producer's report poller, the champion watcher, torch).
- ``step_costs(...)``: the route's steps timed one by one in this process on the same request
  bodies and the same cold-start champion as ``streamlearn serve`` (``cold_start_builder``):
  ``parse`` (orjson + pydantic, the 422 checks), ``score`` (features, model, ranking, the
  ``predictions`` messages), of which ``model`` (``predict_proba_many``), ``respond`` (the JSON
  body) and ``log`` (``KafkaSink.send_many`` of the request's messages, the call only: the
  sending is librdkafka's threads).

"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from services.ops.cpu import mean_us


def step_costs(bodies: Sequence[bytes], bootstrap_servers: str, topic: str,
               requests: int = 2_000) -> dict[str, float]:
    """Mean µs per request of each step of ``POST /v1/predict``, one at a time in process."""
    from config.settings import ServingSettings, TrainerSettings, load
    from services.serving.body import parse_body
    from services.serving.cli import cold_start_builder
    from services.serving.metrics import ServingMetrics
    from services.serving.schemas import PredictRequest
    from services.serving.scoring import Champion, model_features, score
    from services.serving.sink import KafkaSink

    serving = load(ServingSettings)
    model = cold_start_builder(load(TrainerSettings), serving.cold_start_prior_ctr)()
    champion = Champion(model, "ctr-v1.0")
    parsed = [parse_body(b, PredictRequest) for b in bodies]
    features = [model_features(p) for p in parsed]
    scored = [score(champion, p, request_id=f"r{i}", now_ms=int(time.time() * 1000))
              for i, p in enumerate(parsed)]
    n = len(bodies)
    sink = KafkaSink(bootstrap_servers, ServingMetrics(), linger_ms=serving.producer_linger_ms)
    try:
        costs = {
            "parse": mean_us(lambda i: parse_body(bodies[i % n], PredictRequest), requests),
            "score": mean_us(lambda i: score(champion, parsed[i % n], request_id="r",
                                              now_ms=0), requests),
            "model": mean_us(lambda i: model.predict_proba_many(features[i % n]), requests),
            "respond": mean_us(lambda i: orjson.dumps(scored[i % n].response), requests),
            "log": mean_us(lambda i: sink.send_many(topic, scored[i % n].messages), requests),
        }
    finally:
        sink.close(10.0)
    return {k: round(v, 1) for k, v in costs.items()}
