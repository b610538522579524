"""Deprecated: `kninfer.codec` was split into `kninfer.protocol.v2` (V2 tensors),
`kninfer.protocol.v1` (V1 bodies) and `kninfer.protocol.jsonio` (JSON); `input_array` is
`kninfer.input_array`.

Each name still imports from here, with a DeprecationWarning naming its new path.
"""

from __future__ import annotations

from kninfer._moved import moved_names

_V2 = (
    "BINARY_HEADER",
    "BINARY_CONTENT_TYPE",
    "has_bool",
    "decode_v2_request",
    "decode_v2_document",
    "encode_v2_response",
    "input_array",
    "parameter_value",
    "to_output",
)
_V1 = ("CSV_PAYLOAD_KEY", "decode_v1_request")
_JSON = ("loads_json", "encode_json", "JSON_CONTENT_TYPE")

__getattr__ = moved_names(
    "kninfer.codec",
    {
        **{name: "kninfer.protocol.v2" for name in _V2},
        **{name: "kninfer.protocol.v1" for name in _V1},
        **{name: "kninfer.protocol.jsonio" for name in _JSON},
    },
)
