"""Prometheus metrics, structured logs, and the one record each request leaves in both."""
