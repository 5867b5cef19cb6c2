// Generated from kernels/geometry.py (python -m fastsoftmax.kernels.geometry);
// edit the numbers there, where each says why it is what it is.
#pragma once
constexpr int THREADS = 256;
constexpr int FORWARD_GROUP = 8;
constexpr int FORWARD_ROWS_PER_LANE = 4;
constexpr int PART_EXTRA = 2;
constexpr int WARP = 32;
constexpr int ROWS_PER_WARP_BLOCK = 8;
