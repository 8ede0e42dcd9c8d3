"""Modal dialogs: confirm, quit, save to file, idle warning."""
