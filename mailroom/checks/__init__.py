"""Preflight checks on what compose wrote, traced back to newsletter.md lines."""
