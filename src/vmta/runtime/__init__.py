"""Settings, building every component from them, start/stop order, logging."""
