"""`python -m stemcodec.render`: see stemcodec/corpus/render.py."""

from stemcodec.corpus.render import main

if __name__ == "__main__":
    raise SystemExit(main())
