"""Segmentation: SegFormer models, training, prediction, pseudo-labels and official-semantics evaluation.

Modules (each imported on use; torch is only imported by the ones that need it):
``model`` build/save/load, ``data`` sources and augmentation, ``train`` the trainer, ``predict``
whole/sliding-window inference, ``pseudo`` confidence-thresholded pseudo-labels, ``evaluate`` the
confusion matrix and mIoU, ``cli`` the ``urbangen train/predict/pseudo-label/evaluate`` commands.
"""
