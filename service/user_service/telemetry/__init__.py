"""Traces, metrics and logs, attached at the edges: interceptors, wrappers, providers.

The domain never imports OpenTelemetry or prometheus_client; this package adapts it.
"""
