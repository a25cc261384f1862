"""The Locust gRPC load generator for the user service (``make load``, ``make load-ui``).

Never import this package into a process that is not Locust's: importing Locust
monkey-patches the standard library for gevent.
"""
