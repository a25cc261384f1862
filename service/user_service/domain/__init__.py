"""The user domain: models, rules and the change feed. No gRPC, protobuf or SQL here."""
