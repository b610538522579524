"""What kninfer tells operators: Prometheus metrics (`prometheus`, `multiprocess`), W3C trace
context (`tracing`), the JSON access log (`access_log`), and where they are taken: the ASGI
middleware (`middleware`) and the gRPC interceptor (`grpc`)."""
