"""Video I/O through ffmpeg (decode, encode) and the synthetic motion dataset."""
