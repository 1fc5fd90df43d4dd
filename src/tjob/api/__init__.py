"""The gRPC face of tjob: the wire contract, the server, authorization, TLS and certificates."""
