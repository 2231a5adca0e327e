"""idface: identity-aware semantic face synthesis and adversarial identity injection.

Reference implementation of Tarollo et al., "Adversarial Identity Injection for Semantic Face
Image Synthesis" (CVPR 2024 Workshops). Data flows faces -> identity -> model -> pipeline -> app.
"""

__version__ = "0.1.0"
