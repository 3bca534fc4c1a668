"""Text-to-image backends behind one small protocol (see base.py)."""
