"""``python -m examples.carecircle``: see launch.py."""

from .launch import main

main()
