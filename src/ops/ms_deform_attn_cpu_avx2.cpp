// The kernel loops compiled for AVX2 + FMA (this file only: see ms_deform_attn_kernels.h).

#define ALIGNDETR_KERNEL_SET avx2
#include "ms_deform_attn_kernels.inc"
