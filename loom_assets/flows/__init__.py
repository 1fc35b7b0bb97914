"""The flows: each module declares one flow's assets as thin wrappers around `stages/`."""
