"""rlayer plugin (opt-in: --plugins rlayer)."""

PLATFORM_OPT_IN = True
