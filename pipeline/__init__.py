"""avdd-data: the offline data-generation pipeline of avdd.

Stages: manifest (recipes) -> extract (faces + audio into a zarr store) -> later stages.
Every stage is usable from Python; ``pipeline.cli`` is a thin click layer over them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("avdd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
