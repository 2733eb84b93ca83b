// y[j, i] = x[i, j]
//
// x [rows, cols] -> y [cols, rows]. One work-group per TR_TILE x TR_TILE
// block, of (TR_TILE, ELEM_LS / TR_TILE) work-items: the block is read
// along x's rows into local memory and written along y's rows, so that both
// global accesses are coalesced; rows of TR_TILE + 1 floats keep the
// transposed local reads off one bank. Exact.

#define TR_STEP (ELEM_LS / TR_TILE)

// pclip__transpose_params
kernel __attribute__((reqd_work_group_size(TR_TILE, TR_STEP, 1))) void
transpose(global const float *x, uint xo, global float *y, uint yo, pclip__transpose_params p) {
    local float tile[TR_TILE * (TR_TILE + 1)];
    const uint rows = (uint)p.rows, cols = (uint)p.cols;
    const uint tx = get_local_id(0), ty = get_local_id(1);
    const uint j0 = get_group_id(0) * TR_TILE, i0 = get_group_id(1) * TR_TILE;
    for (uint r = ty; r < TR_TILE; r += TR_STEP) {
        const uint i = i0 + r, j = j0 + tx;
        if (i < rows && j < cols) tile[r * (TR_TILE + 1) + tx] = x[xo + i * cols + j];
    }
    barrier(CLK_LOCAL_MEM_FENCE); // the block is complete before it is read across
    for (uint r = ty; r < TR_TILE; r += TR_STEP) {
        const uint j = j0 + r, i = i0 + tx;
        if (j < cols && i < rows) y[yo + j * rows + i] = tile[tx * (TR_TILE + 1) + r];
    }
}
