"""overlay-boot: systemd-native subhosts with an overlay root and their own namespaces."""

__version__ = "2.0.0"
