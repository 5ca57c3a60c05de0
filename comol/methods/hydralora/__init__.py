from comol.methods.hydralora.config import HydraLoRAConfig
from comol.methods.hydralora.layer import HydraLoRALayer

__all__ = ["HydraLoRAConfig", "HydraLoRALayer"]
