"""The FastAPI service: answers from materialized state (Redis first, Cassandra as fallback)."""
