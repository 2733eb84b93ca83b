// y = x / max(||x||, eps), per row
//
// As torch.nn.functional.normalize (eps 1e-12) and x / x.norm() (eps 0: an
// all-zero row gives NaN, as in torch). A NaN norm stays NaN (the clamp is a
// comparison that NaN fails). One work-group of ROW_LS work-items per row.

// pclip__l2_norm_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
l2_norm(global const float *x, uint xo, global float *y, uint yo, pclip__l2_norm_params p) {
    local float red[ROW_LS];
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0), cols = p.cols;
    global const float *xr = x + xo + row * cols;
    global float *yr = y + yo + row * cols;
    float q = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) q += xr[j] * xr[j];
    const float norm = sqrt(pclip_sum(red, q));
    const float d = norm < p.eps ? p.eps : norm;
    for (int j = lid; j < cols; j += ROW_LS) yr[j] = xr[j] / d;
}
