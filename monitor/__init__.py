"""bma-monitor: health monitoring of the FWB administrative mailboxes (BMA)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bma-monitor")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
