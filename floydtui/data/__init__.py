"""Datasets: discovery, the pixel pipeline, buckets, captions, caches. Never imports textual."""
