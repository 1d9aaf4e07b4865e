"""The data path: listeners, runtime, routing, the request pipeline and the streaming proxy."""

# decides, before any of them is imported, whether the hot-path modules load compiled or as source
from bastion.gateway import hot_path as hot_path
