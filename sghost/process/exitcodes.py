"""Exit codes by which a resource process tells the supervisor why it ended (sysexits.h values)."""

EXIT_OK = 0
EXIT_PLUGIN_ERROR = 70
"""EX_SOFTWARE: the plugin's setup or worker thread raised."""
EXIT_BROKER_REFUSED = 77
"""EX_NOPERM: the broker refused the credentials or certificate, or TLS could not be set up."""
EXIT_TYPE_MISSING = 78
"""EX_CONFIG: no installed plugin offers the resource's type."""
