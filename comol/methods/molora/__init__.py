from comol.methods.molora.config import MoLoRAConfig
from comol.methods.molora.layer import MoLoRALayer

__all__ = ["MoLoRAConfig", "MoLoRALayer"]
