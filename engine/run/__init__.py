"""One run's life on disk and in the process: its folder and lock, trackers, report, signals, end."""
