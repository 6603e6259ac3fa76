"""Python glue for the BandedDeformConv2d CUDA kernels and TensorRT plugin built from this folder."""
