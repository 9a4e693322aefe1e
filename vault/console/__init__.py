"""The compliance console: server-rendered pages at /console on top of the same services
the HTTP API uses (holds, erasures, subjects, access log)."""
