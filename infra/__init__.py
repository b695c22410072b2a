"""The local stack (Kafka, Cassandra, Redis) and the versioned migrations that shape it."""
