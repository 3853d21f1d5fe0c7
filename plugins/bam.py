"""bam plugin (opt-in: --plugins bam)."""

PLATFORM_OPT_IN = True
