"""avdd's detector package: models, training, evaluation and inference (avdd-train, ...).

It never imports ``pipeline``: the only contract between the two is the on-disk store format.
"""
