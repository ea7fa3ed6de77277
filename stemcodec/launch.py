"""`python -m stemcodec.launch`: see stemcodec/training/launch.py."""

from stemcodec.training.launch import main

if __name__ == "__main__":
    raise SystemExit(main())
