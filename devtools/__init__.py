"""Tools for developing the service without the internet: the FathomNet stand-in, real-server helpers, the demo.

The tests, the bench and the no-internet demo all import from here; the service never does.
"""
