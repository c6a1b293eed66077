"""The D-Bus names the system tests call, written out here (not taken from overlay_boot), so
that a renamed interface fails the tests instead of following along."""

BUS = "org.overlayboot.OverlayBoot1"
MANAGER = "/org/overlayboot/OverlayBoot1"
MANAGER_IFACE = "org.overlayboot.OverlayBoot1.Manager"
SUBHOST_IFACE = "org.overlayboot.OverlayBoot1.Subhost"
NO_SUCH_SUBHOST = "org.overlayboot.OverlayBoot1.Error.NoSuchSubhost"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
# A caller that is not root: nobody, with no groups.
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
