"""The image type of amixup.data (:class:`ImageData`), its errors and constants: the bottom of the package,
importing nothing else of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


DEFAULT_SOURCES = ("cache", "imagefolder", "torchvision_files", "download")


SPLITS = ("test", "train")


_CACHE_FORMAT = 1


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


MNIST_CLASSES = [str(d) for d in range(10)]


CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]


CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]



# CIFAR100_COARSE_OF_FINE[fine_label] = coarse_label (fine labels in alphabetical order, as in the dataset).
CIFAR100_COARSE_OF_FINE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]



class DataNotFoundError(FileNotFoundError):
    """No source could provide the dataset."""



class WeightsNotFoundError(DataNotFoundError, ValueError):
    """Pretrained weights that ``finetune_from`` names are not here and cannot be downloaded: a run that cannot
    start on this machine, skipped like one without its data (and a ``ValueError`` naming ``finetune_from``)."""



class DataCorruptError(RuntimeError):
    """A dataset file or archive is corrupt, truncated or unsafe."""



@dataclass
class ImageData:
    """Images (uint8 [N, C, H, W]) with int64 labels, class names and a provenance string."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> list[int]:
        """Number of images per class."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, index) -> "ImageData":
        """Rows selected by an index tensor/list or boolean mask."""
        index = torch.as_tensor(index)
        return ImageData(self.images[index].contiguous(), self.labels[index].clone(),
                         list(self.classes), self.source)

    def relabel(self, mapping: list[int], classes: list[str]) -> "ImageData":
        """Map label i to mapping[i] (e.g. fine -> coarse); ``classes`` names the new labels."""
        if len(mapping) != self.num_classes:
            raise ValueError(f"mapping must have {self.num_classes} entries, got {len(mapping)}")
        if any(not 0 <= m < len(classes) for m in mapping):
            raise ValueError(f"mapping values must be in [0, {len(classes) - 1}], got {mapping}")
        table = torch.tensor(mapping, dtype=torch.int64)
        return ImageData(self.images, table[self.labels], list(classes), self.source)



def _check_choice(param: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{param} must be one of {sorted(allowed)}, got {value!r}")

