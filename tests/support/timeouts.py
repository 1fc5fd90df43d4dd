"""Hang guards: how long a test waits for an event before it calls it a hang. Never a wait: every
wait is on the event itself, so these only bound how long a broken run takes to fail."""

HANG = 30.0  # seconds: one event (a reply, a line, a handshake, a wake-up)
PROCESS_HANG = 60.0  # seconds: a whole command as a process, Python's start-up included
