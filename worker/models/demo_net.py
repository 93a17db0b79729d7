"""The demo world's small VGG-style CNN.

Conv–BN–ReLU blocks with max-pooling, dropout in the classifier. Registered in the architecture
registry under the import path ``worker.models.demo_net:demo_vgg`` (and the short name ``demo-vgg``),
exactly as a user's own ``package.module:factory`` would be.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

DEFAULT_WIDTHS: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M", 64, 128, "M", 128, "M")


class DemoVGG(nn.Module):
    """VGG-style network for 64×64 RGB images.

    Args:
        num_classes: number of output logits.
        widths: conv widths in order, ``"M"`` for a 2×2 max-pool.
        dropout: dropout probability in the classifier (0 disables it).
        image_size: input side length, used to size the classifier.
    """

    def __init__(
        self,
        num_classes: int = 12,
        widths: Sequence[int | str] = DEFAULT_WIDTHS,
        dropout: float = 0.3,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = 3, image_size
        for width in widths:
            if width == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
            else:
                layers += [
                    nn.Conv2d(channels, int(width), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(width)),
                    nn.ReLU(inplace=True),
                ]
                channels = int(width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.classifier(self.features(x))


def demo_vgg(num_classes: int = 12, **kwargs) -> DemoVGG:
    """Factory used by the registry (``worker.models.demo_net:demo_vgg``)."""
    return DemoVGG(num_classes=num_classes, **kwargs)
