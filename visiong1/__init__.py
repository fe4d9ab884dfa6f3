"""visiong1: Ray-native RL post-training of vision-language models on verifiable rewards (Vision-G1).

Kept free of heavy imports: this package is imported at interpreter start by `visiong1_torchvision.pth`.
"""

__version__ = "0.1.0"
