"""SQL statements as spans: OpenTelemetry's asyncpg instrumentation, statement text only.

Each query of the PostgreSQL store becomes a CLIENT span (``db.statement`` holds the SQL
with its ``$n`` placeholders) below the store operation's span. Parameter values are never
recorded (``capture_parameters=False``): they are user data — names, email addresses.

The instrumentation patches asyncpg's connection class for the whole process and binds the
tracer provider it is given; a process that builds a second server (tests do) re-binds it to
that server's provider.
"""

from __future__ import annotations

from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import TracerProvider


def trace_postgres_queries(tracer_provider: TracerProvider) -> None:
    instrumentor = AsyncPGInstrumentor(capture_parameters=False)
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=tracer_provider)
