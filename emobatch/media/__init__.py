"""Files in and out: what an input is (file types), decoding photos and videos, drawing and
encoding annotated outputs."""
