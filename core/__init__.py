"""The bottom layer every other package may import: errors, config, storage, run records,
the serving store's pointers, paths, logging and finding Java. It imports no other feedgen
package (docs/internals.md, "Layers")."""
