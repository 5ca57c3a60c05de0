from comol.methods.comol.config import CoMoLConfig
from comol.methods.comol.layer import CoMoLLayer

__all__ = ["CoMoLConfig", "CoMoLLayer"]
