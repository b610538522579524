"""The HTTP transport: the ASGI app and its fast path (`app`), the V2 and V1 routes (`routes`),
the one HTTP error mapping and body limits (`responses`), CloudEvents (`events`), MLflow's scoring
routes (`scoring`) and the OpenAPI document (`openapi`). Every route decodes with
kninfer.protocol and calls kninfer.dataplane; none knows a model family."""
