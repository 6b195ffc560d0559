"""The operator console at ``/console``: server-rendered pages, a stylesheet and a little
script, every file in this package (no CDN, no build step)."""
