"""ImaginaryNet: synthetic training sets for weakly/semi-supervised object detection."""

__version__ = "0.1.0"
