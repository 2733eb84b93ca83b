#version 450
// y[r] = the k largest x[r, j] then their j (as float), per row
//
// Order as backends/cpu/topk.c: each value becomes an unsigned key (the
// float's bits made monotonic, -0 as +0, NaN key 0: below every number),
// larger key first, equal keys by the lower column. One workgroup per row
// and k selection passes: pass i finds, among the columns after the
// (i-1)-th pick in that order, the first one: each invocation scans a
// stride of the row, then a shared-memory tree reduction. Exact.
#include "common.glsl"

// pclip__topk_params
layout(push_constant) uniform Params {
    int rows, cols, k;
} p;

layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

shared uint skey[PCLIP_LS];
shared uint sidx[PCLIP_LS];

uint topk_key(float v) {
    if (isnan(v)) return 0u;
    if (v == 0.0) return 0x80000000u; // -0 as +0
    uint u = floatBitsToUint(v);
    return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

bool before(uint ka, uint ia, uint kb, uint ib) {
    return ka > kb || (ka == kb && ia < ib);
}

void main() {
    uint row = pclip_group_index();
    if (row >= uint(p.rows)) return; // the whole workgroup leaves together
    const uint lid = gl_LocalInvocationID.x, ls = PCLIP_LS, cols = uint(p.cols), k = uint(p.k);
    const uint base = row * cols, obase = row * 2u * k;
    uint pk = 0xFFFFFFFFu, pi = 0u; // above every key: the first pass sees every column
    for (uint i = 0u; i < k; i++) {
        uint bk = 0u, bi = 0xFFFFFFFFu; // below every column
        for (uint j = lid; j < cols; j += ls) {
            const uint kj = topk_key(x[base + j]);
            if ((kj < pk || (kj == pk && j > pi)) && before(kj, j, bk, bi)) {
                bk = kj;
                bi = j;
            }
        }
        skey[lid] = bk;
        sidx[lid] = bi;
        barrier();
        for (uint s = ls / 2u; s > 0u; s /= 2u) {
            if (lid < s && before(skey[lid + s], sidx[lid + s], skey[lid], sidx[lid])) {
                skey[lid] = skey[lid + s];
                sidx[lid] = sidx[lid + s];
            }
            barrier();
        }
        pk = skey[0];
        pi = sidx[0];
        if (lid == 0u) {
            const float v = x[base + pi];
            y[obase + i] = v == 0.0 ? 0.0 : v;
            y[obase + k + i] = float(pi);
        }
        barrier(); // skey[0] is read by all before the next pass writes it
    }
}
