"""`kninfer compile`: a scikit-learn model as an ONNX graph, verified against the model itself.

MODEL_DIR holds a model the sklearn family serves (model.skops, model.joblib, ...) or an MLflow
model of the sklearn flavor. The estimator is converted with skl2onnx (onnxmltools' converters
for LightGBM estimators inside it), run through ONNX Runtime on real rows beside the original,
and written as `model.onnx` with `compile.json` (source sha256, versions, opsets, the V2 inputs
and outputs, the verification figures) only when every label is equal and every number is
within tolerance. docs/compile.md is the user's account.

Modules: `source` loads the model, `rows` finds or generates the rows to verify on, `graph`
converts and edits the ONNX graph, `verify` compares, `build` ties them and writes the files.
Nothing here is imported until the command runs; the converters only inside functions.
"""
