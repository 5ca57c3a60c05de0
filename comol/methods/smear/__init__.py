from comol.methods.smear.config import SMEARConfig
from comol.methods.smear.layer import SMEARLayer

__all__ = ["SMEARConfig", "SMEARLayer"]
