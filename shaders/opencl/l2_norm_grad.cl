// y = dy / n - x (x . dy) / n^3, n = max(||x||, eps), per row
//
// The gradient of l2_norm.cl with the same eps, as backends/cpu/
// l2_norm_grad.c: below eps, y = dy / eps; otherwise (a NaN norm included)
// y = (dy - x (x . dy) / n^2) / n. One work-group of ROW_LS work-items per
// row; the two sums are common.cl's reductions.

// pclip__l2_norm_grad_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
l2_norm_grad(global const float *x, uint xo, global const float *dy, uint dyo, global float *y,
             uint yo, pclip__l2_norm_grad_params p) {
    local float red[ROW_LS];
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0), cols = p.cols;
    global const float *xr = x + xo + row * cols;
    global const float *dr = dy + dyo + row * cols;
    global float *yr = y + yo + row * cols;
    float q = 0.0f, d = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) {
        q += xr[j] * xr[j];
        d += xr[j] * dr[j];
    }
    const float norm = sqrt(pclip_sum(red, q));
    const float dot = pclip_sum(red, d);
    if (norm < p.eps) {
        for (int j = lid; j < cols; j += ROW_LS) yr[j] = dr[j] / p.eps;
    } else {
        const float c = dot / (norm * norm);
        for (int j = lid; j < cols; j += ROW_LS) yr[j] = (dr[j] - xr[j] * c) / norm;
    }
}
