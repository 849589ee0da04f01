"""Send a composed newsletter: python send.py newsletters/<slug> --to parents,staff"""

from mailroom.cli import send_main

if __name__ == "__main__":
    send_main()
