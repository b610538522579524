"""The wire formats, as pure codecs with no I/O: V2 tensors and specs (`tensor`), the Open
Inference Protocol over REST (`v2`) and gRPC (`grpc_v2`), KServe V1 (`v1`), JSON bodies
(`jsonio`) and MLflow's scoring payloads (`mlflow_scoring`)."""
