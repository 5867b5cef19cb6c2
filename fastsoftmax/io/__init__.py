"""Files: the idx format, the data sets, the model file, hostile .npz files and safe writes.

This layer serves every other and imports none of them: it knows nothing of kernels.
"""
