"""smart plugin (opt-in: --plugins smart)."""

PLATFORM_OPT_IN = True
