"""The gRPC edge: decode requests, call the domain, encode responses and statuses."""
