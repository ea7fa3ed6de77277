"""`python -m stemcodec.prepare`: see stemcodec/corpus/prepare.py."""

from stemcodec.corpus.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
