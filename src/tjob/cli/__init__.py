"""Command-line entry points: `tjob` (client) and `tjobs` (server)."""
