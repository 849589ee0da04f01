"""Stage 1: newsletter.md -> the HTML and text of each version, and the build folder."""
