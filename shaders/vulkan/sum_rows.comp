#version 450
// y[j] = sum_i x[i, j]
//
// x [rows, cols] -> y [cols] (a bias's gradient). A workgroup owns SC
// consecutive columns (specialization constant 1) and splits the rows into
// LS / SC slices: slice s sums rows s, s + slices, ... of its column, so
// that neighbouring invocations read neighbouring floats (coalesced); then
// one invocation per column adds the slices' sums from shared memory.
#include "common.glsl"

layout(constant_id = 1) const uint SC = 32;

// pclip__sum_rows_params
layout(push_constant) uniform Params {
    int rows, cols;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

shared float part[PCLIP_LS];

void main() {
    const uint rows = uint(p.rows), cols = uint(p.cols), lid = gl_LocalInvocationID.x;
    const uint c = lid % SC, slice = lid / SC, slices = PCLIP_LS / SC;
    const uint j = pclip_group_index() * SC + c;
    float s = 0.0;
    if (j < cols)
        for (uint i = slice; i < rows; i += slices) s += x[i * cols + j];
    part[lid] = s;
    barrier(); // every slice's sum is in place
    if (slice == 0u && j < cols) {
        float t = part[c];
        for (uint k = 1u; k < slices; k++) t += part[k * SC + c];
        y[j] = t;
    }
}
