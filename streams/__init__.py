"""Faust agents that fold the event stream into serving state (Redis) and durable state (Cassandra)."""
