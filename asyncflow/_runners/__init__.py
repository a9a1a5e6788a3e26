"""Task runners: where runs execute (threads, processes, later distributed engines)."""
