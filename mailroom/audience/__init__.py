"""The mailing lists: reading the school's exports and planning who gets which version."""
