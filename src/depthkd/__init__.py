"""depthkd: distil monocular depth foundation models into small, fast CNN students."""

__version__ = "0.1.0"
