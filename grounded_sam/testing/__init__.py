"""Tiny, seeded, random models built from the real libraries' own classes.

For tests, notebooks and the app's ``--tiny-random`` smoke mode: they run the real loading
and inference code in seconds without any downloaded weights. Their outputs are meaningless.
"""
