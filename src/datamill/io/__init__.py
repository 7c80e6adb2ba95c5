"""Sources and sinks: files through fsspec (local, memory://, object stores)."""
