"""The gRPC V2 transport: the Open Inference Protocol servicer over kninfer.dataplane
(`servicer`) and its server with the error map and metrics interceptors (`server`)."""
