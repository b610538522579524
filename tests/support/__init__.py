"""What the tests share, importable as `tests.support.<module>` from anywhere in the suite
(`tests/conftest.py` holds only pytest's hooks and fixtures):

- `paths`: the checkout's root, the vendored CRD schemas, the lock checker;
- `servers`: real `kninfer serve` processes on their own loopback ports, and real clients
  (KServe's gRPC stub, NVIDIA's tritonclient);
- `pods`: the rendered manifests' containers run with podman (`make image-test`);
- `compiled_models`: a realistic scikit-learn pipeline compiled by the real `kninfer compile`;
- `reliability_models`: estimators whose timing a test controls;
- `torch_models`: small PyTorch models saved the ways the PyTorch family loads them;
- `triton_client`: tritonclient, run in a process of its own.
"""
