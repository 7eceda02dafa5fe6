"""TV-L1 optical flow: the OpenCV reference backend and a batched PyTorch backend."""
