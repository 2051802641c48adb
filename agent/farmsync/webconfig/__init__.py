"""web.config: hardened parsing, finding the effective <machineKey>, minimal edits, safe diffs."""
