"""semloc: semantic location prediction for social-media posts (text + image)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semloc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
