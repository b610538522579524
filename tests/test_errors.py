"""kninfer.errors, the one error map: every error type's HTTP status, gRPC code and message, for
kninfer's own errors, KServe's (mapped by name) and anything else (a 500 that leaks nothing)."""

from __future__ import annotations

import pytest

from kninfer import errors

OURS = [
    (errors.InvalidInput("bad row"), 400, "INVALID_ARGUMENT", "bad row"),
    (
        errors.ModelNotFound("m"),
        404,
        "NOT_FOUND",
        "model 'm' not found; GET /v1/models lists the served models",
    ),
    (errors.PayloadTooLarge("big"), 413, "RESOURCE_EXHAUSTED", "big"),
    (errors.UnsupportedMediaType("xml"), 415, "INVALID_ARGUMENT", "xml"),
    (errors.Overloaded("busy"), 429, "RESOURCE_EXHAUSTED", "busy"),
    (errors.ModelNotReady("m"), 503, "UNAVAILABLE", "model 'm' is not ready: it is not loaded yet"),
    (errors.ServiceUnavailable("draining"), 503, "UNAVAILABLE", "draining"),
    (errors.UpstreamError("predictor said 500"), 502, "UNAVAILABLE", "predictor said 500"),
    (errors.UpstreamTimeout("slow"), 504, "DEADLINE_EXCEEDED", "slow"),
    (errors.RequestTimeout("slow"), 504, "DEADLINE_EXCEEDED", "slow"),
    (errors.ModelLoadError("no file"), 500, "INTERNAL", "no file"),
    (errors.WarmupFailed("nan"), 500, "INTERNAL", "nan"),
]


@pytest.mark.parametrize(
    ("exc", "status", "code", "message"), OURS, ids=[type(e).__name__ for e, *_ in OURS]
)
def test_our_errors(exc: Exception, status: int, code: str, message: str) -> None:
    assert (errors.status_of(exc), errors.grpc_code_of(exc), errors.message_of(exc)) == (
        status,
        code,
        message,
    )


def test_kserve_errors_are_mapped_by_name_with_their_reason() -> None:
    from kserve import errors as kserve_errors

    cases = [
        (kserve_errors.InvalidInput("bad tensor"), 400, "INVALID_ARGUMENT", "bad tensor"),
        (kserve_errors.InferenceError("cannot decode"), 400, "INVALID_ARGUMENT", "cannot decode"),
        (kserve_errors.ModelNotFound("m"), 404, "NOT_FOUND", "Model with name m does not exist."),
        (kserve_errors.ModelNotReady("m"), 503, "UNAVAILABLE", "Model with name m is not ready."),
    ]
    for exc, status, code, message in cases:
        assert (errors.status_of(exc), errors.grpc_code_of(exc), errors.message_of(exc)) == (
            status,
            code,
            message,
        ), type(exc).__name__


def test_anything_else_is_a_500_that_leaks_nothing() -> None:
    exc = KeyError("secret internal detail")
    assert (errors.status_of(exc), errors.grpc_code_of(exc), errors.message_of(exc)) == (
        500,
        "INTERNAL",
        "internal server error; see the server log",
    )
    unimplemented = NotImplementedError("explain")
    assert (errors.status_of(unimplemented), errors.grpc_code_of(unimplemented)) == (
        501,
        "UNIMPLEMENTED",
    )
