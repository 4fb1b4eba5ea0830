"""Storage adapters, one subpackage per technology: ``memory`` (tests) and ``sqlite`` (embedded).

Nothing outside this package may import a driver or know which backend is in use.
"""
