"""Stage 1: sources, decoding, bases, extraction and the HDF5 feature caches."""
