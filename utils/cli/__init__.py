"""The terminal: quiet libraries, progress lines, and argument parsing for the scripts."""
