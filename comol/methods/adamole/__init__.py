from comol.methods.adamole.config import AdaMoLEConfig
from comol.methods.adamole.layer import AdaMoLELayer

__all__ = ["AdaMoLEConfig", "AdaMoLELayer"]
