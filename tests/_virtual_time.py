"""The virtual-time event loop now lives in the package (the evaluation harness runs on it); tests import it
from here as before."""

from gateway.eval._virtual_time import VirtualTimeLoop

__all__ = ["VirtualTimeLoop"]
