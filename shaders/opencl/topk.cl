// y[r] = the k largest x[r, j] then their j (as float), per row
//
// Order as backends/cpu/topk.c: each value becomes an unsigned key (the
// float's bits made monotonic, -0 as +0, NaN key 0: below every number),
// larger key first, equal keys by the lower column. One work-group of
// ROW_LS work-items per row and k selection passes: pass i finds, among the
// columns after the (i-1)-th pick in that order, the first one (a strided
// scan, then a local-memory tree reduction). Exact.

static uint topk_key(float v) {
    if (isnan(v)) return 0u;
    if (v == 0.0f) return 0x80000000u; // -0 as +0
    uint u = as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static bool topk_before(uint ka, uint ia, uint kb, uint ib) {
    return ka > kb || (ka == kb && ia < ib);
}

// pclip__topk_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
topk(global const float *x, uint xo, global float *y, uint yo, pclip__topk_params p) {
    local uint skey[ROW_LS];
    local uint sidx[ROW_LS];
    const size_t row = get_group_id(0);
    const uint lid = get_local_id(0), cols = (uint)p.cols, k = (uint)p.k;
    global const float *xr = x + xo + row * cols;
    global float *yr = y + yo + row * 2 * k;
    uint pk = 0xFFFFFFFFu, pi = 0u; // above every key: the first pass sees every column
    for (uint i = 0; i < k; i++) {
        uint bk = 0u, bi = 0xFFFFFFFFu; // below every column
        for (uint j = lid; j < cols; j += ROW_LS) {
            const uint kj = topk_key(xr[j]);
            if ((kj < pk || (kj == pk && j > pi)) && topk_before(kj, j, bk, bi)) {
                bk = kj;
                bi = j;
            }
        }
        skey[lid] = bk;
        sidx[lid] = bi;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint s = ROW_LS / 2; s > 0; s /= 2) {
            if (lid < s && topk_before(skey[lid + s], sidx[lid + s], skey[lid], sidx[lid])) {
                skey[lid] = skey[lid + s];
                sidx[lid] = sidx[lid + s];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        pk = skey[0];
        pi = sidx[0];
        if (lid == 0) {
            const float v = xr[pi];
            yr[i] = v == 0.0f ? 0.0f : v;
            yr[k + i] = (float)pi;
        }
        barrier(CLK_LOCAL_MEM_FENCE); // skey[0] is read by all before the next pass writes it
    }
}
