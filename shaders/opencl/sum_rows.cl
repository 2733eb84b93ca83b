// y[j] = sum_i x[i, j]
//
// x [rows, cols] -> y [cols] (a bias's gradient). A work-group of
// (SR_COLS, ELEM_LS / SR_COLS) work-items owns SR_COLS consecutive columns
// and splits the rows into slices: slice s sums rows s, s + slices, ... of
// its column (neighbouring work-items read neighbouring floats); then one
// work-item per column adds the slices' sums from local memory.

#define SR_SLICES (ELEM_LS / SR_COLS)

// pclip__sum_rows_params
kernel __attribute__((reqd_work_group_size(SR_COLS, SR_SLICES, 1))) void
sum_rows(global const float *x, uint xo, global float *y, uint yo, pclip__sum_rows_params p) {
    local float part[SR_SLICES * SR_COLS];
    const uint rows = (uint)p.rows, cols = (uint)p.cols;
    const uint c = get_local_id(0), slice = get_local_id(1);
    const uint j = get_group_id(0) * SR_COLS + c;
    float s = 0.0f;
    if (j < cols)
        for (uint i = slice; i < rows; i += SR_SLICES) s += x[xo + i * cols + j];
    part[slice * SR_COLS + c] = s;
    barrier(CLK_LOCAL_MEM_FENCE); // every slice's sum is in place
    if (slice == 0 && j < cols) {
        float t = part[c];
        for (uint k = 1; k < SR_SLICES; k++) t += part[k * SR_COLS + c];
        y[yo + j] = t;
    }
}
