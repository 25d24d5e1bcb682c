// The target that owns the precompiled LibTorch header the other modules reuse.
