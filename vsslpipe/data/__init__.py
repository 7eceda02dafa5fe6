"""Dataset index, HDF5 stores (frames, flow) and clip datasets."""
