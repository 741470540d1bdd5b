"""Reusable blocks of the detector's networks: convolutions (``conv``) and attention (``attention``)."""
