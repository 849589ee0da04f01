"""Compose a newsletter: python compose.py newsletters/<slug> [--open]"""

from mailroom.cli import compose_main

if __name__ == "__main__":
    compose_main()
