"""What the tests, the benchmarks and the stack tooling share: a server process on a free port,
a throwaway PostgreSQL cluster, an OTLP receiver, development credentials and certificates,
Kubernetes schemas. Like OpenTelemetry's ``opentelemetry-test-utils``, a package of its own that
imports none of its users (``tests/test_layering.py`` keeps it so), so ``make up`` never depends
on the test suite and the tests never reach into ``scripts/``."""
