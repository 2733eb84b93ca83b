// y = softmax(x * scale + causal mask), per row
//
// With the causal mask, row r of each block of `cols` rows sees columns
// 0..r % cols; masked columns are 0. The row maximum is subtracted first, as
// torch does; a row with NaN or +inf gives NaN everywhere it sees. One
// work-group of ROW_LS work-items per row.

// pclip__softmax_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
softmax(global const float *x, uint xo, global float *y, uint yo, pclip__softmax_params p) {
    local float red[ROW_LS];
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0), cols = p.cols;
    const int seen = p.causal ? (int)(row % (size_t)cols) + 1 : cols;
    global const float *xr = x + xo + row * cols;
    global float *yr = y + yo + row * cols;
    float m = -INFINITY;
    for (int j = lid; j < seen; j += ROW_LS) m = fmax(m, xr[j] * p.scale);
    m = pclip_max(red, m);
    float s = 0.0f;
    for (int j = lid; j < seen; j += ROW_LS) {
        float e = pclip_exp(xr[j] * p.scale - m);
        yr[j] = e; // read back below by this same work-item
        s += e;
    }
    const float inv = 1.0f / pclip_sum(red, s);
    for (int j = lid; j < seen; j += ROW_LS) yr[j] *= inv;
    for (int j = seen + lid; j < cols; j += ROW_LS) yr[j] = 0.0f;
}
