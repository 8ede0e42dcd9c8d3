"""Talking to the engine: the OpenAI-compatible streaming client, its events, the caching
client and the conversation the chat pane shows. No UI here."""
