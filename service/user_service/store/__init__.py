"""Persistence behind the ``UserStore`` protocol; the backend is chosen by URL scheme."""
