"""vaelab's version, in a module of its own so any layer can record it (``run.json``)
without importing the package root, which imports every layer."""
__version__ = "0.1.0"
