"""Built-in message templates (installed as the gateway.templates package)."""
