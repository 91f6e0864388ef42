"""The builder configs' image sizes (height, width), shared by the builder and the training job."""

RESOLUTIONS = {
    "28": (28, 28),
    "64": (64, 64),
    "128": (128, 128),
    "256": (256, 256),
    "336x504": (336, 504),
}
