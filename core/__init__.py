"""The ground floor: settings, errors, the database pool, logs, periods, deadlines, memory,
the service's own metrics and the HTTP helpers every routes module uses. Imports nothing of
the project's but sql/ (see ARCHITECTURE.md)."""
