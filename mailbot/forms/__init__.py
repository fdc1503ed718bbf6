"""Forms: sniffing and safety checks, sheet loaders, the Annex 3 reader, normalisation and the named row checks, the `check` report."""
