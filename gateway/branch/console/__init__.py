"""The branch console: a small web page on the branch LAN for the supervisor (gateway/branch/console/server.py)."""
