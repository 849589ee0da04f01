"""Long-running local servers: the live preview and SendGrid's event webhook."""
