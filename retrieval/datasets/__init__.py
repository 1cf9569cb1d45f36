"""Dataset readers and demo catalogue builders (MovieLens, ReDial, demo media)."""
