"""The two workflows that call every stage: compose a newsletter, and the rules of a send."""
