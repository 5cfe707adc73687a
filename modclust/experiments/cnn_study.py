"""Stage 7: the small CNN (:mod:`modclust.core.cnn`) on each dataset, trained and measured
through the image classifiers' study (:mod:`modclust.experiments.classifier`).

The clusterability loss acts on ``conv2`` (its (out-channel x in-channel) kernel blocks) and
``fc1`` (hidden units x the flattened features of conv2's channel blocks). The clusters are equal
unit clusters, consistent through the network (:class:`modclust.core.units.UnitClusters`):
conv2's k blocks of output channels are fc1's k blocks of input features. ``conv1`` carries no
loss: it reads one input channel, which cannot be cut into k blocks on its input side; ``fc2``
writes the classes. Conv2's channels are measured by their spatial mean (post-ReLU).

The analyses run :func:`modclust.core.cnn.cnn_as_sequential` (the CNN's own modules), cut at
the first layer a measurement touches: conv1 on 28 x 28 images is most of a forward pass, and
it runs once per model and test set. The paper's comparisons pair the runs by seed
(:mod:`modclust.paper.classifier_numbers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from modclust.core.checks import Problems, check_int, check_ints, check_list
from modclust.core.cnn import CNN, cnn_as_sequential, make_cnn
from modclust.experiments.classifier import ClassifierSettings, ClassifierStudy, LayerWords


@dataclass(frozen=True)
class CnnSettings(ClassifierSettings):
    """Stage 7's settings, one home for their defaults (the paper preset's values): the shared
    classifier settings (:class:`~modclust.experiments.classifier.ClassifierSettings`) and the
    CNN's widths, ``channels`` (conv1's, conv2's output channels) and ``hidden`` (fc1's units).

    A preset's ``cnn:`` section sets them by field name; notebook 07 takes each as the parameter
    ``cnn_<field>`` (:func:`modclust.pipeline.presets.settings_from_parameters`).
    """

    preset_section: ClassVar[str | None] = "cnn"

    circuit_params: tuple[str, ...] = ("fc1.weight", "fc2.weight")
    channels: tuple[int, ...] = (8, 16)
    hidden: int = 64

    def check(self, problems: Problems) -> None:
        super().check(problems)
        with problems.about("channels"):
            channels = check_ints("CnnSettings.channels", check_list("CnnSettings.channels", self.channels), 1,
                                  hint="(conv1's, conv2's) output channels, e.g. [8, 16]")
            if len(channels) != 2:
                raise ValueError(f"CnnSettings.channels must be two ints (conv1's, conv2's), got {list(channels)}")
            self.put("channels", channels)
        with problems.about("hidden"):
            self.put("hidden", check_int("CnnSettings.hidden", self.hidden, 1))
        k = self.n_clusters
        if problems.ok("n_clusters", "channels", "hidden") and k > min(self.channels[1], self.hidden, self.channels[0]):
            problems.add(f"n_clusters={k} does not fit conv2 ({self.channels[1]} channels reading "
                         f"{self.channels[0]}) and fc1 ({self.hidden} units): lower n_clusters or widen the layers",
                         "n_clusters", "channels", "hidden")

    def maskable_params(self) -> list[str]:
        return [f"{m}.{p}" for m in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")]


class Cnn(ClassifierStudy[CnnSettings]):
    """The CNN as an image classifier's study: conv2's channels and fc1's units clustered."""

    name = "CNN"
    clustered_layers = ("conv2", "fc1")
    macro_prefix = "Cnn"
    layer_words = {"conv2": LayerWords("Conv", "channels", "conv2 channel"), "fc1": LayerWords("Fc", "units", "fc1")}

    def __init__(self, settings: CnnSettings) -> None:
        if not isinstance(settings, CnnSettings):
            raise TypeError(f"the CNN study takes CnnSettings, got {type(settings).__name__}")
        super().__init__(settings)

    def build(self, seed: int, n_classes: int) -> CNN:
        """``make_cnn(seed, channels, hidden, n_classes)`` (28 x 28 single-channel images, flat)."""
        return make_cnn(seed, self.settings.channels, self.settings.hidden, n_classes)

    def view(self, model: nn.Module) -> nn.Sequential:
        return cnn_as_sequential(model)  # type: ignore[arg-type]

    def setup_values(self) -> dict[str, int | tuple[int, int] | None]:
        """The widths, fc1's input features (conv2's 7 x 7 maps flattened) and the two layers' block shapes."""
        s = self.settings
        k, (c1, c2), h = s.n_clusters, s.channels, s.hidden
        return {"ChannelsOne": c1, "ChannelsTwo": c2, "Hidden": h, "FcOneIn": c2 * 49,
                "ConvBlock": (c2 // k, c1 // k) if c2 % k == 0 and c1 % k == 0 else None,
                "FcBlock": (h // k, c2 * 49 // k) if h % k == 0 and c2 % k == 0 else None}
