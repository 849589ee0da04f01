"""The preview page office staff look at before sending."""
