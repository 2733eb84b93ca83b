// y[i] = table[idx[i]]
//
// An index outside the table gives a row of zeros; pure data movement,
// bit-exact. The table is one buffer (a weight no larger than the device's
// CL_DEVICE_MAX_MEM_ALLOC_SIZE; the backend refuses larger ones by name).

// pclip__gather_rows_params
kernel __attribute__((reqd_work_group_size(ELEM_LS, 1, 1))) void
gather_rows(global const float *table, uint to, global const int *idx, uint io, global float *y,
            uint yo, pclip__gather_rows_params p) {
    const size_t e = get_global_id(0);
    const uint cols = (uint)p.cols;
    if (e >= (size_t)p.rows * cols) return;
    const uint i = e / cols, j = e % cols;
    const int k = idx[io + i];
    y[yo + e] = k >= 0 && k < p.table_rows ? table[to + (size_t)k * cols + j] : 0.0f;
}
