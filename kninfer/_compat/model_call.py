"""The lean `kserve.Model.__call__` for predictors, with the same histograms.

KServe's version (kserve/model.py, 0.21) looks up three labelled histograms, calls
`inspect.iscoroutinefunction` three times and runs identity pre/post-processing on every
request: about a tenth of the server's time per request at batch 1 (py-spy; docs/performance.md).
A model whose `preprocess`/`postprocess` are KServe's identity takes `lean_call`: it observes
`request_preprocess_seconds` (here the identity step plus KServe's `validate`),
`request_predict_seconds` and `request_postprocess_seconds` once per call, as KServe does
(labelled children cached once per model). Anything else (an override, `explain`, response
headers, latency logging), and any kserve version but the one this was written for
(kninfer._compat.fenced), goes through KServe's own `__call__`.
"""

from __future__ import annotations

import time
from typing import Any

from kserve import Model
from kserve.model import InferenceVerb

from kninfer._compat import fenced


def takes_lean_path(model: Model, verb: InferenceVerb) -> bool:
    cls = type(model)
    return (
        verb is InferenceVerb.PREDICT
        and cls.preprocess is Model.preprocess
        and cls.postprocess is Model.postprocess
        and not model.required_response_headers
        and not model.enable_latency_logging
        and fenced()
    )


async def lean_call(model: Model, body: Any, headers: Any) -> tuple[Any, dict[str, str]]:
    """What KServe's `__call__` does for a PREDICT with identity pre/post-processing."""
    pre, predict, post = _histograms(model)
    clock = time.perf_counter
    started = clock()
    payload = model.validate(body)
    predicting = clock()
    pre.observe(predicting - started)
    response = await model.predict(payload, headers)
    done = clock()
    predict.observe(done - predicting)
    post.observe(clock() - done)
    return response, {}


def _histograms(model: Model) -> tuple[Any, Any, Any]:
    histograms = model.__dict__.get("_kninfer_histograms")
    if histograms is None:
        from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels

        labels = get_labels(model.name)
        histograms = model.__dict__["_kninfer_histograms"] = tuple(
            h.labels(**labels) for h in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)
        )
    return histograms  # type: ignore[no-any-return]
