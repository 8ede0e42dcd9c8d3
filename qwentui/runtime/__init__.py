"""The runtime that composes engine, telemetry, idle watchdog and cost meter; the headless
serve loop that runs it (the guard) and what it prints."""
