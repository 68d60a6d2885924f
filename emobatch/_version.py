"""emobatch's version, in a module of its own so the package's modules can name it without
importing the package's __init__ (which imports them lazily: a cycle)."""
__version__ = "0.1.0"
