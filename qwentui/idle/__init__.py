"""The idle watchdog (a pure state machine on an injected clock) and what it does when it
fires: stop the engine, or stop it and power the box off."""
