"""Full-size screens opened over the console (log, help, client snippet, cost report)."""
