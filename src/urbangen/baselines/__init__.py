"""Image-translation baselines every generated dataset is compared with (FDA)."""
