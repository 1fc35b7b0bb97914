"""When work starts: one window sensor per flow, and reprocessing."""
