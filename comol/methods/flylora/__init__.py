from comol.methods.flylora.config import FlyLoRAConfig
from comol.methods.flylora.layer import FlyLoRALayer

__all__ = ["FlyLoRAConfig", "FlyLoRALayer"]
