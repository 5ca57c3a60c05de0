from comol.methods.mola.config import MoLAConfig
from comol.methods.mola.layer import MoLALayer

__all__ = ["MoLAConfig", "MoLALayer"]
