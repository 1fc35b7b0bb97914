"""When work starts: the window sensor, late inputs and reprocessing."""
