#version 450
// y[j, i] = x[i, j]
//
// x [rows, cols] -> y [cols, rows]. One workgroup per TILE x TILE block
// (TILE: specialization constant 1; the LS invocations are TILE columns by
// LS / TILE rows): the block is read along x's rows into shared memory and
// written along y's rows, so that both global accesses are coalesced; rows
// of TILE + 1 floats keep the transposed shared reads off one bank. Exact.
#include "common.glsl"

layout(constant_id = 1) const uint TILE = 32;

// pclip__transpose_params
layout(push_constant) uniform Params {
    int rows, cols;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

shared float tile[TILE * (TILE + 1)];

void main() {
    const uint rows = uint(p.rows), cols = uint(p.cols);
    const uint tx = gl_LocalInvocationID.x % TILE, ty = gl_LocalInvocationID.x / TILE;
    const uint step = PCLIP_LS / TILE;
    const uint i0 = gl_WorkGroupID.y * TILE, j0 = gl_WorkGroupID.x * TILE;
    for (uint r = ty; r < TILE; r += step) {
        const uint i = i0 + r, j = j0 + tx;
        if (i < rows && j < cols) tile[r * (TILE + 1) + tx] = x[i * cols + j];
    }
    barrier(); // the block is complete before it is read across
    for (uint r = ty; r < TILE; r += step) {
        const uint j = j0 + r, i = i0 + tx;
        if (j < cols && i < rows) y[j * rows + i] = tile[tx * (TILE + 1) + r];
    }
}
